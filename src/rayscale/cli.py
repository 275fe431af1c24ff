"""The ``rayscale`` command: each subcommand parses its options into one options object, makes one
call, and shows the result through :mod:`rayscale.views.report`."""

from __future__ import annotations

from dataclasses import fields
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from rayscale.errors import RayscaleError
from rayscale.options.commands import (
    RUN_PHASES,
    SCALE_PHASES,
    CompareOptions,
    PredictOptions,
    RunOptions,
    ScaleOptions,
    TuneOptions,
    parse_nodes,
    parse_phases,
)
from rayscale.options.space import load_space
from rayscale.views.progress import ProgressCallback
from rayscale.views.report import dashboard as draw_dashboard
from rayscale.views.report import report, show_comparison, show_forecast, show_run, show_scale
from rayscale.work.environment import rayscale_version

try:  # typer >= 0.29 vendors click; its exceptions are not the `click` package's
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer on the real click
    import click.exceptions as click_exceptions  # type: ignore[no-redef]

_err = Console(stderr=True)


def _fail(exc: RayscaleError | click_exceptions.UsageError, exit_code: int) -> typer.Exit:
    message = exc.format_message() if isinstance(exc, click_exceptions.UsageError) else str(exc)
    _err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)
    return typer.Exit(exit_code)


class _FlagsWithoutType:
    """Typer's help shows ``<bool>`` beside every flag (``--json <bool>``), which takes no value:
    a flag's type column is left empty."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _Command(_FlagsWithoutType, TyperCommand):
    pass


class _OneLineErrors(_FlagsWithoutType, TyperGroup):
    """Usage errors (unknown option, a value of the wrong type) and every :class:`RayscaleError`
    as one line on stderr, with the error's exit code."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click_exceptions.NoArgsIsHelpError:
            raise
        except click_exceptions.UsageError as exc:
            raise _fail(exc, 2) from None

    def invoke(self, ctx: Any) -> Any:
        """The one place errors become one line and an exit code."""
        try:
            return super().invoke(ctx)
        except click_exceptions.NoArgsIsHelpError:
            raise
        except click_exceptions.UsageError as exc:
            raise _fail(exc, 2) from None
        except RayscaleError as exc:
            raise _fail(exc, exc.exit_code) from None


app = typer.Typer(
    name="rayscale",
    cls=_OneLineErrors,
    help="Benchmark how hyperparameter search scales on a Ray cluster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


# Options `run` and `scale` share, declared once.
DatasetOpt = Annotated[
    str,
    typer.Option(
        help="diabetes | friedman1:ROWS[:FEATURES] | csv:PATH:TARGET | parquet:PATH:TARGET | sklearn:NAME"
    ),
]
GridOpt = Annotated[str, typer.Option(help="'seed' (the 20 built-in configs) or a grid YAML file")]
SeedOpt = Annotated[int, typer.Option(help="Seed for the split, synthetic data, sampling and models.")]
TestSizeOpt = Annotated[float, typer.Option(help="Hold-out share, between 0 and 1.")]
ValidationSizeOpt = Annotated[
    float,
    typer.Option(help="Share of the training rows to select on (best, ASHA); 0: select on the hold-out."),
]
CpusPerTrialOpt = Annotated[int, typer.Option(help="CPUs per Ray trial (also XGBoost's nthread).")]
RepeatsOpt = Annotated[int, typer.Option(help="Timed rounds per phase, interleaved; all are kept.")]
OutputOpt = Annotated[
    Path | None, typer.Option(help="Bundle directory (default: results/<run-id>/)", show_default=False)
]
PushGatewayOpt = Annotated[
    str | None, typer.Option(help="Pushgateway URL; metrics are pushed as each part ends.")
]
TuneModelOpt = Annotated[
    str, typer.Option(help="Tune: xgboost, lightgbm, or sklearn:CLASS (warm_start or partial_fit).")
]
SpaceOpt = Annotated[
    str | None, typer.Option(help="Tune search space YAML (default: the Tune model's built-in one)")
]
SamplesOpt = Annotated[int | None, typer.Option(help="Tune: random-sample N configs instead of the grid.")]
MaxRoundsOpt = Annotated[
    int, typer.Option(help="Tune: rounds of a full trial (boosting rounds, trees, iterations, epochs).")
]
AshaReplaysOpt = Annotated[
    int, typer.Option(help="ASHA: replays of the sweep for the spread of its answer (0: none).")
]
StorageOpt = Annotated[str | None, typer.Option(help="Tune storage path or URI (default: <bundle>/tune)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result JSON to stdout.")]
MaxWallOpt = Annotated[
    float | None,
    typer.Option(help="Seconds: stop cleanly after this long (below a RayJob's activeDeadlineSeconds)."),
]


class TaskChoice(str, Enum):
    auto = "auto"
    regression = "regression"
    classification = "classification"


class Scheduler(str, Enum):
    asha = "asha"
    none = "none"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rayscale {rayscale_version()}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """rayscale: sequential vs Ray-parallel model grids and a Ray Tune sweep, on a local Ray or KubeRay."""


def _run_options(
    values: dict[str, Any], allowed: tuple[str, ...], tune: TuneOptions | None = None
) -> RunOptions:
    """The one builder of RunOptions for `run` and `scale`: from a command's parameters (its
    ``locals()``), every one named like a RunOptions field."""
    names = {f.name for f in fields(RunOptions)} - {"phases", "tune", "command"}
    chosen = {name: values[name] for name in names if name in values}
    if isinstance(chosen.get("task"), Enum):
        chosen["task"] = chosen["task"].value
    return RunOptions(phases=parse_phases(values["phases"], allowed), tune=tune or TuneOptions(), **chosen)


@app.command(cls=_Command)
def run(
    dataset: DatasetOpt = "diabetes",
    grid: GridOpt = "seed",
    seed: SeedOpt = 42,
    test_size: TestSizeOpt = 0.2,
    validation_size: ValidationSizeOpt = 0.0,
    repeats: RepeatsOpt = 5,
    cpus_per_trial: CpusPerTrialOpt = 1,
    address: Annotated[
        str,
        typer.Option(envvar="RAY_ADDRESS", help="Empty: start an embedded Ray; 'auto', host:port or ray://…"),
    ] = "",
    phases: Annotated[
        str, typer.Option(help="Comma list of grid-seq, grid-ray, tune.")
    ] = "grid-seq,grid-ray,tune",
    max_trials: Annotated[int | None, typer.Option(help="Refuse grids with more configs than this.")] = None,
    task: Annotated[
        TaskChoice,
        typer.Option(help="auto: a text target, or whole numbers with at most 20 values, is classes."),
    ] = TaskChoice.auto,
    metric: Annotated[
        str | None,
        typer.Option(
            help="Selection metric: rmse, r2, mae; accuracy, balanced_accuracy, f1_macro, log_loss, roc_auc.",
            show_default=False,
        ),
    ] = None,
    cv: Annotated[
        int | None,
        typer.Option(help="Score every config by K-fold CV on the training split; refit the best."),
    ] = None,
    output: OutputOpt = None,
    tune_model: TuneModelOpt = "xgboost",
    space: SpaceOpt = None,
    samples: SamplesOpt = None,
    max_rounds: MaxRoundsOpt = 300,
    scheduler: Annotated[
        Scheduler, typer.Option(help="Tune: early stopping with ASHA, or none.")
    ] = Scheduler.asha,
    grace_period: Annotated[int, typer.Option(help="ASHA: rounds every trial gets.")] = 50,
    reduction_factor: Annotated[int, typer.Option(help="ASHA: 1/N of trials go on at each rung.")] = 3,
    report_every: Annotated[int, typer.Option(help="Tune: report metrics every K rounds.")] = 25,
    asha_replays: AshaReplaysOpt = 200,
    storage: StorageOpt = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus /metrics on this port during the run.")
    ] = None,
    push_gateway: PushGatewayOpt = None,
    strict_metrics: Annotated[bool, typer.Option(help="Fail the run (exit 5) when a push fails.")] = False,
    ray_metrics_port: Annotated[
        int | None, typer.Option(help="Port an embedded Ray exports its metrics on.")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Finish an interrupted run's bundle, with that run's own options.")
    ] = None,
    max_wall: MaxWallOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the grid sequentially and as parallel Ray tasks, then the Tune sweep; write the bundle."""
    from rayscale.work.run import resume_benchmark, run_benchmark

    if resume is not None:
        show_run(*resume_benchmark(resume, [ProgressCallback()]), json_out)
        return
    tune = TuneOptions(
        model=tune_model,
        space=load_space(space, tune_model),
        samples=samples,
        max_rounds=max_rounds,
        scheduler=scheduler.value,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
        report_every=report_every,
        asha_replays=asha_replays,
        storage=storage,
    )
    show_run(*run_benchmark(_run_options(locals(), RUN_PHASES, tune), [ProgressCallback()]), json_out)


@app.command("report", cls=_Command)
def report_command(
    result_path: Annotated[
        Path, typer.Argument(metavar="RESULT", help="A result.json or its bundle directory.")
    ],
    plots: Annotated[bool, typer.Option(help="Re-render the PNG plots next to the result.")] = True,
    json_out: JsonOpt = False,
) -> None:
    """Re-render the tables (and plots) of an existing result bundle."""
    report(result_path, plots, json_out)


@app.command(cls=_Command)
def dashboard(
    bundles: Annotated[
        list[Path], typer.Argument(metavar="BUNDLE...", help="Result bundles or result.json files.")
    ],
    output: Annotated[Path, typer.Option(help="PNG to write.")] = Path("dashboard.png"),
) -> None:
    """Draw the Grafana dashboard's panels from result bundles (when Grafana is not at hand)."""
    draw_dashboard(bundles, output)


@app.command(cls=_Command)
def scale(
    nodes: Annotated[str, typer.Option(help="Node counts to measure, e.g. 1,2,4.")],
    cpus_per_node: Annotated[int, typer.Option(help="CPUs per node (--local-cluster).")] = 1,
    local_cluster: Annotated[
        bool, typer.Option(help="Start a real multi-node Ray cluster on this machine.")
    ] = False,
    kuberay: Annotated[
        str | None, typer.Option(help="Resize this RayCluster's workers for each node count.")
    ] = None,
    namespace: Annotated[
        str, typer.Option(help="Namespace of the RayCluster (default: this pod's, else default)")
    ] = "",
    wait_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for resized nodes (--kuberay).")
    ] = 600.0,
    isolate: Annotated[
        bool,
        typer.Option(help="--local-cluster: each node in its own network namespace and CPU cgroup (root)."),
    ] = False,
    cpu_limit: Annotated[
        float | None,
        typer.Option(help="--isolate: cores per node (CFS quota); default fills 80% of this host's CPUs."),
    ] = None,
    link_mbps: Annotated[float | None, typer.Option(help="--isolate: each node's link rate, Mbit/s.")] = None,
    link_delay_ms: Annotated[
        float | None, typer.Option(help="--isolate: each node's link delay, ms each way (needs netem).")
    ] = None,
    address: Annotated[
        str, typer.Option(envvar="RAY_ADDRESS", help="An existing cluster; its first N nodes are used.")
    ] = "",
    dataset: DatasetOpt = "diabetes",
    grid: GridOpt = "seed",
    phases: Annotated[str, typer.Option(help="Comma list of grid-ray, tune.")] = "grid-ray",
    repeats: RepeatsOpt = 3,
    seed: SeedOpt = 42,
    test_size: TestSizeOpt = 0.2,
    cpus_per_trial: CpusPerTrialOpt = 1,
    price_per_node_hour: Annotated[
        float | None, typer.Option(help="Price of a node-hour, for cost figures.")
    ] = None,
    deadline: Annotated[
        float | None, typer.Option(help="Seconds: report the cheapest node count meeting it.")
    ] = None,
    push_gateway: PushGatewayOpt = None,
    output: OutputOpt = None,
    max_wall: MaxWallOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the same work on each node count; write speedup/efficiency curves with scaling-law fits."""
    from rayscale.work.scale import run_scale

    opts = ScaleOptions(
        nodes=parse_nodes(nodes),
        cpus_per_node=cpus_per_node,
        local_cluster=local_cluster,
        kuberay=kuberay,
        namespace=namespace,
        wait_timeout_s=wait_timeout,
        price_per_node_hour=price_per_node_hour,
        deadline_s=deadline,
        isolate=isolate,
        cpu_limit=cpu_limit,
        link_mbps=link_mbps,
        link_delay_ms=link_delay_ms,
        run=_run_options(locals(), SCALE_PHASES),
    )
    show_scale(*run_scale(opts, [ProgressCallback()]), json_out)


@app.command(cls=_Command)
def predict(
    bundle: Annotated[
        Path, typer.Argument(metavar="BUNDLE", help="A run or scale bundle (directory or its JSON).")
    ],
    nodes: Annotated[str, typer.Option(help="Node counts: 1,2,4 or 1..1024 (powers of two).")] = "1..1024",
    cpus_per_node: Annotated[
        int | None, typer.Option(help="CPUs per node (default: as measured).", show_default=False)
    ] = None,
    provision_s: Annotated[
        float | None,
        typer.Option(
            help="Seconds to start a node (default: a measured resize, else 0).", show_default=False
        ),
    ] = None,
    bandwidth_mbps: Annotated[
        float | None, typer.Option(help="Network to each node; the data's transfer.")
    ] = None,
    price_per_node_hour: Annotated[float | None, typer.Option(help="Price of one node for an hour.")] = None,
    deadline: Annotated[
        float | None, typer.Option(help="Seconds; report the cheapest node count within it.")
    ] = None,
    validate: Annotated[
        bool, typer.Option("--validate", help="Predict every measured point from the smallest one alone.")
    ] = False,
    grid: Annotated[
        str | None,
        typer.Option(help="Predict this grid instead ('seed' or a YAML), timed by the fitted cost model."),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="PNG (default: predict.png in the bundle).", show_default=False)
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Forecast a bundle at other node counts: the grid's schedule and the Tune sweep's ASHA, simulated."""
    from rayscale.work.predict import run_forecast

    opts = PredictOptions(
        bundle=bundle,
        nodes=parse_nodes(nodes, ranges=True),
        cpus_per_node=cpus_per_node,
        provision_s=provision_s,
        bandwidth_mbps=bandwidth_mbps,
        price_per_node_hour=price_per_node_hour,
        deadline_s=deadline,
        validate_points=validate,
        grid=grid,
        plot=plot,
    )
    show_forecast(run_forecast(opts), bundle, plot, json_out)


@app.command(cls=_Command)
def compare(
    a: Annotated[
        Path, typer.Argument(metavar="A", help="Baseline bundle (result.json, scale.json or directory).")
    ],
    b: Annotated[Path, typer.Argument(metavar="B", help="Candidate bundle.")],
    fail: Annotated[
        list[str] | None,
        typer.Option(help="FIGURE:PERCENT; exit 1 if B is worse by more and beyond the noise."),
    ] = None,
    junit: Annotated[Path | None, typer.Option(help="Write the verdicts as JUnit XML here.")] = None,
    allow_different: Annotated[
        bool, typer.Option(help="Compare bundles of different kinds, datasets or grids.")
    ] = False,
) -> None:
    """Compare two bundles; exit 1 when a figure regresses past its threshold beyond the noise."""
    from rayscale.results.compare import compare_bundles

    comparison = compare_bundles(CompareOptions(a, b, tuple(fail or ()), allow_different))
    show_comparison(comparison, junit)
    if comparison.failures:
        raise typer.Exit(1)
