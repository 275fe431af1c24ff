"""The ``rayscale`` command: each subcommand parses its options and calls one library function."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from rayscale import __version__
from rayscale.errors import RayscaleError

app = typer.Typer(
    name="rayscale",
    help="Benchmark how hyperparameter search scales on a Ray cluster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_err = Console(stderr=True)


class Scheduler(str, Enum):
    asha = "asha"
    none = "none"


def _fail(exc: RayscaleError) -> typer.Exit:
    _err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    return typer.Exit(exc.exit_code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rayscale {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """rayscale: sequential vs Ray-parallel model grids on a local Ray or a KubeRay cluster."""


@app.command()
def run(
    dataset: Annotated[
        str, typer.Option(help="diabetes | friedman1:ROWS[:FEATURES] | csv:PATH:TARGET")
    ] = "diabetes",
    grid: Annotated[str, typer.Option(help="'seed' (the 20 built-in configs) or a grid YAML file")] = "seed",
    seed: Annotated[int, typer.Option(help="Seed for the split, synthetic data and estimators.")] = 42,
    test_size: Annotated[float, typer.Option(help="Hold-out share, between 0 and 1.")] = 0.2,
    repeats: Annotated[int, typer.Option(help="Timed rounds per phase (min/median/max reported).")] = 3,
    cpus_per_trial: Annotated[int, typer.Option(help="CPUs per Ray trial (also XGBoost's nthread).")] = 1,
    address: Annotated[
        str,
        typer.Option(envvar="RAY_ADDRESS", help="Empty: start an embedded Ray; 'auto', host:port or ray://…"),
    ] = "",
    phases: Annotated[str, typer.Option(help="Comma list of grid-seq, grid-ray, tune.")] = "grid-seq,grid-ray,tune",
    max_trials: Annotated[int | None, typer.Option(help="Refuse grids with more configs than this.")] = None,
    output: Annotated[
        Path | None, typer.Option(help="Bundle directory [default: results/<run-id>/].")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result JSON to stdout.")] = False,
) -> None:
    """Run the grid sequentially and as parallel Ray tasks; print tables, write the bundle."""
    from rayscale.pipeline import RunOptions, parse_phases, run_benchmark
    from rayscale.report import print_report

    try:
        opts = RunOptions(
            dataset=dataset,
            grid=grid,
            seed=seed,
            test_size=test_size,
            repeats=repeats,
            cpus_per_trial=cpus_per_trial,
            address=address,
            output=output,
            phases=parse_phases(phases),
            max_trials=max_trials,
        )
        result, bundle = run_benchmark(opts)
    except RayscaleError as exc:
        raise _fail(exc) from None
    if json_out:
        typer.echo(result.to_json(), nl=False)
    else:
        print_report(result, Console(), bundle)


@app.command()
def report(
    result_path: Annotated[
        Path, typer.Argument(metavar="RESULT", help="A result.json or its bundle directory.")
    ],
    plots: Annotated[bool, typer.Option(help="Re-render the PNG plots next to the result.")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result JSON to stdout.")] = False,
) -> None:
    """Re-render the tables (and plots) of an existing result bundle."""
    from rayscale.report import print_report, write_plots
    from rayscale.results import load_result

    try:
        result = load_result(result_path)
    except RayscaleError as exc:
        raise _fail(exc) from None
    bundle = result_path if result_path.is_dir() else result_path.parent
    if plots:
        write_plots(result, bundle)
    if json_out:
        typer.echo(result.to_json(), nl=False)
    else:
        print_report(result, Console(), bundle)
