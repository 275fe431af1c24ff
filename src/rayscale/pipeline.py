"""``rayscale run``: the grid sequentially and as Ray tasks, then the Tune sweep, into one result bundle."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rayscale import environment, summary
from rayscale.cluster import ray_session, validate_address
from rayscale.datasets import Dataset, load_dataset
from rayscale.errors import RayscaleError
from rayscale.grids import TrialSpec, load_grid
from rayscale.report import write_plots
from rayscale.results import (
    GridResult,
    ParallelPhase,
    Result,
    SequentialPhase,
    Timing,
    TrialRecord,
    TuneResult,
    check_output_dir,
    new_run_id,
    utc_now,
    write_bundle,
)
from rayscale.runners import RayGridRunner, run_sequential
from rayscale.tune import TuneOptions, check_options, count_trials, run_sweep

PHASES = ("grid-seq", "grid-ray", "tune")
RAY_PHASES = ("grid-ray", "tune")


@dataclass
class RunOptions:
    """Everything ``rayscale run`` takes; the CLI fills it, tests and benches build it directly."""

    dataset: str = "diabetes"
    grid: str = "seed"
    seed: int = 42
    test_size: float = 0.2
    repeats: int = 3
    cpus_per_trial: int = 1
    address: str | None = None
    output: Path | None = None
    phases: tuple[str, ...] = PHASES
    max_trials: int | None = None
    num_cpus: int | None = None  # CPUs of an embedded Ray (default: all of this machine's)
    tune: TuneOptions = field(default_factory=TuneOptions)
    command: list[str] = field(default_factory=lambda: list(sys.argv))


def parse_phases(text: str) -> tuple[str, ...]:
    """``grid-seq,grid-ray`` → a checked tuple in run order."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise RayscaleError(f"--phases is empty; choose from {', '.join(PHASES)}")
    for name in names:
        if name not in PHASES:
            raise RayscaleError(f"unknown phase {name!r} in --phases; choose from {', '.join(PHASES)}")
    return tuple(p for p in PHASES if p in names)


def _validate(opts: RunOptions) -> None:
    if opts.repeats < 1:
        raise RayscaleError(f"--repeats must be at least 1, got {opts.repeats}")
    if opts.cpus_per_trial < 1:
        raise RayscaleError(f"--cpus-per-trial must be at least 1, got {opts.cpus_per_trial}")
    if opts.max_trials is not None and opts.max_trials < 1:
        raise RayscaleError(f"--max-trials must be at least 1, got {opts.max_trials}")
    parse_phases(",".join(opts.phases))
    validate_address(opts.address)
    if "tune" in opts.phases:
        check_options(opts.tune)
    if opts.output is not None:
        check_output_dir(opts.output)


@contextmanager
def _progress(console: Console, label: str, total: int) -> Iterator[Callable[..., None]]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda *_: progress.advance(task)


def _pick_round(rounds: list[tuple[float, list[TrialRecord]]]) -> tuple[Timing, list[TrialRecord]]:
    """The timing over all rounds, and the trials of the median round (the one reported)."""
    timing = Timing.of([wall for wall, _ in rounds])
    trials = next(trials for wall, trials in rounds if wall == timing.wall_s)
    return timing, trials


def _grid_parallel(
    opts: RunOptions, dataset: Dataset, specs: list[TrialSpec], cpus: int, connect_s: float, console: Console
) -> ParallelPhase:
    runner = RayGridRunner(dataset, opts.cpus_per_trial, cpus)
    with console.status("warming up Ray workers"):
        warmup_s = runner.warm_up()
    rounds = []
    for r in range(opts.repeats):
        with _progress(console, f"Ray grid, round {r + 1}/{opts.repeats}", len(specs)) as tick:
            rounds.append(runner.run(specs, on_trial=tick))
    timing, trials = _pick_round(rounds)
    return ParallelPhase(
        **timing.model_dump(),
        connect_s=connect_s,
        warmup_s=warmup_s,
        cpus_per_trial=opts.cpus_per_trial,
        makespan_s=summary.makespan(trials),
        trials=trials,
    )


def run_benchmark(opts: RunOptions, console: Console | None = None) -> tuple[Result, Path]:
    """Run the selected phases and write the bundle; return the result and its directory."""
    console = console or Console(stderr=True)
    _validate(opts)
    dataset = load_dataset(opts.dataset, seed=opts.seed, test_size=opts.test_size)
    specs = load_grid(opts.grid, seed=opts.seed, max_trials=opts.max_trials)
    run_id = new_run_id()
    out_dir = opts.output or Path("results") / run_id
    check_output_dir(out_dir)
    created = utc_now()
    env = environment.capture()

    sequential: SequentialPhase | None = None
    if "grid-seq" in opts.phases:
        rounds = []
        for r in range(opts.repeats):
            with _progress(console, f"sequential grid, round {r + 1}/{opts.repeats}", len(specs)) as tick:
                rounds.append(run_sequential(specs, dataset, on_trial=tick))
        timing, trials = _pick_round(rounds)
        sequential = SequentialPhase(**timing.model_dump(), trials=trials)

    cluster = None
    parallel: ParallelPhase | None = None
    tuned: TuneResult | None = None
    lower_bound = efficiency = None
    if any(p in opts.phases for p in RAY_PHASES):
        with ray_session(opts.address, num_cpus=opts.num_cpus) as cluster:
            if "grid-ray" in opts.phases:
                parallel = _grid_parallel(opts, dataset, specs, cluster.cpus, cluster.connect_s, console)
                lower_bound = summary.lower_bound([t.fit_s for t in parallel.trials], cluster.cpus)
                efficiency = summary.efficiency(lower_bound, parallel.wall_s)
            if "tune" in opts.phases:
                tune_opts = replace(opts.tune, cpus_per_trial=opts.cpus_per_trial, seed=opts.seed)
                out_dir.mkdir(parents=True, exist_ok=True)  # Tune's storage lives in the bundle
                total = count_trials(tune_opts.space, tune_opts.samples)
                with _progress(console, "Tune sweep (XGBoost)", total) as tick:
                    tuned = run_sweep(dataset, tune_opts, cluster.cpus, out_dir, on_trial=tick)

    mismatches = summary.mismatches(sequential.trials, parallel.trials) if sequential and parallel else []
    speed = saved = saved_pct = None
    if sequential and parallel:
        speed = summary.speedup(sequential.wall_s, parallel.wall_s)
        saved = sequential.wall_s - parallel.wall_s
        saved_pct = 100.0 * saved / sequential.wall_s
    reference = parallel or sequential
    grid = (
        None
        if reference is None
        else GridResult(
            configs=len(specs),
            cpus=cluster.cpus if cluster else 1,
            nodes=cluster.nodes if cluster else 1,
            sequential=sequential,
            parallel=parallel,
            speedup=speed,
            time_saved_s=saved,
            time_saved_pct=saved_pct,
            lower_bound_s=lower_bound,
            efficiency=efficiency,
            best=summary.best(reference.trials),
            consistent=not mismatches,
            mismatches=mismatches,
        )
    )
    # Through JSON once, so the stored options equal what a reader loads back (tuples → lists, paths → str).
    options = json.loads(json.dumps({k: v for k, v in asdict(opts).items() if k != "command"}, default=str))
    result = Result(
        run_id=run_id,
        created_utc=created,
        command=opts.command,
        environment=env,
        options=options,
        dataset=dataset.describe(),
        cluster=cluster,
        grid=grid,
        tune=tuned,
    )
    write_bundle(result, out_dir)
    write_plots(result, out_dir)
    if mismatches:
        raise RayscaleError(
            f"parallel and sequential metrics differ for {len(mismatches)} config(s), e.g. {mismatches[0]} "
            f"(bundle kept in {out_dir})",
            4,
        )
    return result, out_dir
