"""``rayscale run``: the grid sequentially and as Ray tasks, then the Tune sweep, into one result bundle."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rayscale import environment, summary
from rayscale.cluster import HeadWatch, check_reachable, gcs_address, ray_session, validate_address
from rayscale.datasets import Dataset, load_dataset
from rayscale.errors import RayscaleError
from rayscale.grids import TrialSpec, load_grid
from rayscale.journal import Journal, read_partial
from rayscale.metrics import RunMetrics, redact_url, validate_gateway, validate_port, workload_label
from rayscale.report import write_plots
from rayscale.results import (
    JOURNAL_FILE,
    RESULT_FILE,
    ClusterInfo,
    GridResult,
    ParallelPhase,
    Result,
    SequentialPhase,
    Timing,
    TrialRecord,
    TuneResult,
    TuneTrial,
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
    ray_metrics_port: int | None = None  # where an embedded Ray exports its own metrics
    metrics_port: int | None = None
    push_gateway: str | None = None
    strict_metrics: bool = False
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
    validate_port(opts.metrics_port)
    validate_gateway(opts.push_gateway)
    if "tune" in opts.phases:
        check_options(opts.tune)
    if opts.output is not None:
        check_output_dir(opts.output)
    if any(p in opts.phases for p in RAY_PHASES):
        check_reachable(opts.address)


@contextmanager
def progress_bar(console: Console, label: str, total: int) -> Iterator[Callable[..., None]]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda *_: progress.advance(task)


def pick_round(rounds: list[tuple[float, list[TrialRecord]]]) -> tuple[Timing, list[TrialRecord]]:
    """The timing over all rounds, and the trials of the median round (the one reported)."""
    timing = Timing.of([wall for wall, _ in rounds])
    trials = next(trials for wall, trials in rounds if wall == timing.wall_s)
    return timing, trials


def _logged(tick: Callable[..., None], journal: Journal, phase: str, round_: int) -> Callable[[Any], None]:
    """A per-trial callback that appends the trial to the journal and advances the progress bar."""

    def on_trial(record: TrialRecord | TuneTrial) -> None:
        journal.trial(phase, record, round_)
        tick()

    return on_trial


def _grid_sequential(
    opts: RunOptions, dataset: Dataset, specs: list[TrialSpec], console: Console, journal: Journal
) -> SequentialPhase:
    rounds = []
    for r in range(opts.repeats):
        with progress_bar(console, f"sequential grid, round {r + 1}/{opts.repeats}", len(specs)) as tick:
            rounds.append(
                run_sequential(specs, dataset, on_trial=_logged(tick, journal, "grid_sequential", r + 1))
            )
    timing, trials = pick_round(rounds)
    return SequentialPhase(**timing.model_dump(), trials=trials)


def _grid_parallel(
    opts: RunOptions,
    dataset: Dataset,
    specs: list[TrialSpec],
    cluster: ClusterInfo,
    console: Console,
    journal: Journal,
) -> ParallelPhase:
    runner = RayGridRunner(dataset, opts.cpus_per_trial, cluster.cpus)
    with console.status("warming up Ray workers"):
        warmup_s = runner.warm_up()
    rounds = []
    for r in range(opts.repeats):
        with progress_bar(console, f"Ray grid, round {r + 1}/{opts.repeats}", len(specs)) as tick:
            rounds.append(runner.run(specs, on_trial=_logged(tick, journal, "grid_parallel", r + 1)))
    timing, trials = pick_round(rounds)
    return ParallelPhase(
        **timing.model_dump(),
        connect_s=cluster.connect_s,
        warmup_s=warmup_s,
        cpus_per_trial=opts.cpus_per_trial,
        makespan_s=summary.makespan(trials),
        trials=trials,
    )


def _grid_result(
    specs: list[TrialSpec],
    cluster: ClusterInfo | None,
    seq: SequentialPhase | None,
    par: ParallelPhase | None,
) -> GridResult | None:
    reference = par or seq
    if reference is None:
        return None
    grid = GridResult(
        configs=len(specs),
        cpus=cluster.cpus if cluster else 1,
        nodes=cluster.nodes if cluster else 1,
        sequential=seq,
        parallel=par,
        best=summary.best(reference.trials),
    )
    if par is not None:
        grid.lower_bound_s = summary.lower_bound([t.fit_s for t in par.trials], grid.cpus)
        grid.efficiency = summary.efficiency(grid.lower_bound_s, par.wall_s)
    if seq is not None and par is not None:
        grid.speedup = summary.speedup(seq.wall_s, par.wall_s)
        grid.time_saved_s = seq.wall_s - par.wall_s
        grid.time_saved_pct = 100.0 * grid.time_saved_s / seq.wall_s
        grid.mismatches = summary.mismatches(seq.trials, par.trials)
        grid.consistent = not grid.mismatches
    return grid


def run_benchmark(opts: RunOptions, console: Console | None = None) -> tuple[Result, Path]:
    """Run the selected phases and write the bundle; return the result and its directory."""
    _validate(opts)
    dataset = load_dataset(opts.dataset, seed=opts.seed, test_size=opts.test_size)
    specs = load_grid(opts.grid, seed=opts.seed, max_trials=opts.max_trials)
    run_id = new_run_id()
    out_dir = opts.output or Path("results") / run_id
    check_output_dir(out_dir)
    created = utc_now()
    journal = Journal(
        out_dir,
        {
            "kind": "run",
            "run_id": run_id,
            "created_utc": created,
            "command": _redacted(opts.command),
            "options": _options(opts),
        },
    )
    return _execute(opts, dataset, specs, run_id, created, out_dir, journal, console or Console(stderr=True))


def resume_benchmark(run_dir: Path, console: Console | None = None) -> tuple[Result, Path]:
    """Finish an interrupted run: phases it completed are kept, an interrupted grid phase runs again,
    and an interrupted Tune sweep continues (``Tuner.restore``) without re-running finished trials."""
    if (run_dir / RESULT_FILE).exists():
        raise RayscaleError(f"--resume {run_dir}: the run already finished (it has {RESULT_FILE})")
    partial = read_partial(run_dir)  # raises for anything that is not a rayscale run bundle
    manifest = partial.manifest
    if manifest.get("kind") != "run" or "options" not in manifest:
        raise RayscaleError(f"--resume {run_dir}: run.json does not describe a rayscale run")
    opts = _options_from(manifest["options"], run_dir)
    _validate(replace(opts, output=None))
    dataset = load_dataset(opts.dataset, seed=opts.seed, test_size=opts.test_size)
    specs = load_grid(opts.grid, seed=opts.seed, max_trials=opts.max_trials)
    journal = Journal.reopen(run_dir)
    saved = journal.saved_phases()
    finished_tune = [TuneTrial.model_validate(row) for row in journal.rows("tune")]
    return _execute(
        opts,
        dataset,
        specs,
        manifest["run_id"],
        manifest.get("created_utc", utc_now()),
        run_dir,
        journal,
        console or Console(stderr=True),
        saved=saved,
        tune_finished=finished_tune,
    )


def _execute(
    opts: RunOptions,
    dataset: Dataset,
    specs: list[TrialSpec],
    run_id: str,
    created: str,
    out_dir: Path,
    journal: Journal,
    console: Console,
    saved: dict[str, dict] | None = None,
    tune_finished: list[TuneTrial] | None = None,
) -> tuple[Result, Path]:
    saved = saved or {}
    metrics = RunMetrics(
        run_id,
        workload_label(opts.dataset, opts.grid),
        push_gateway=opts.push_gateway,
        strict=opts.strict_metrics,
        warn=lambda line: console.print(line, style="yellow", highlight=False, markup=False),
    )
    if opts.metrics_port is not None:
        metrics.serve(opts.metrics_port)
    phase = "grid_sequential"
    cluster: ClusterInfo | None = None
    try:
        seq: SequentialPhase | None = None
        par: ParallelPhase | None = None
        tuned: TuneResult | None = None
        # Connect first when a Ray phase will run: a cluster that cannot fit one trial fails the run
        # before any work, and every phase sees the same machine state.
        needs_ray = any(p in opts.phases for p in RAY_PHASES)
        session = (
            ray_session(opts.address, num_cpus=opts.num_cpus, metrics_port=opts.ray_metrics_port)
            if needs_ray
            else nullcontext(None)
        )

        def head_lost(address: str) -> None:
            # Runs on the watch thread while the main thread is blocked inside Ray: report, record,
            # push what there is, and end the process (Ray would abort it a minute later anyway).
            message = (
                f"lost the Ray head at {address} during {phase}; finished trials are kept in "
                f"{out_dir / JOURNAL_FILE}; continue with: rayscale run --resume {out_dir}"
            )
            print(f"error: {message}", file=sys.stderr, flush=True)
            journal.finish("failed", error=message)
            metrics.record_failure(
                phase, cpus=cluster.cpus if cluster else 1, nodes=cluster.nodes if cluster else 1
            )
            metrics.push_all()
            metrics.close()
            os._exit(3)

        with session as cluster, HeadWatch(gcs_address(), head_lost) if cluster else nullcontext():
            if cluster is not None and opts.cpus_per_trial > cluster.cpus:
                raise RayscaleError(
                    f"--cpus-per-trial {opts.cpus_per_trial} is more than the cluster's {cluster.cpus} CPUs: "
                    "no trial could ever be scheduled"
                )
            if "grid-seq" in opts.phases:
                if phase in saved:
                    seq = SequentialPhase.model_validate(saved[phase])
                else:
                    seq = _grid_sequential(opts, dataset, specs, console, journal)
                    journal.phase_done(phase, seq)
                metrics.record_phase(
                    phase,
                    trials=seq.trials,
                    wall_s=seq.wall_s,
                    lower_bound_s=sum(t.fit_s for t in seq.trials),
                    cpus=1,
                    nodes=1,
                    best_rmse=min(t.rmse for t in seq.trials),
                )
                metrics.push_phase(phase)
            if cluster is not None and "grid-ray" in opts.phases:
                phase = "grid_parallel"
                if phase in saved:
                    par = ParallelPhase.model_validate(saved[phase])
                else:
                    par = _grid_parallel(opts, dataset, specs, cluster, console, journal)
                    journal.phase_done(phase, par)
                grid = _grid_result(specs, cluster, seq, par)
                assert grid is not None
                metrics.record_phase(
                    phase,
                    trials=par.trials,
                    wall_s=par.wall_s,
                    lower_bound_s=grid.lower_bound_s,
                    cpus=cluster.cpus,
                    nodes=cluster.nodes,
                    best_rmse=min(t.rmse for t in par.trials),
                    speedup=grid.speedup,
                    efficiency=grid.efficiency,
                )
                metrics.push_phase(phase)
            if cluster is not None and "tune" in opts.phases:
                phase = "tune"
                if phase in saved:
                    tuned = TuneResult.model_validate(saved[phase])
                else:
                    resume = tune_finished is not None and _tune_started(opts, out_dir)
                    tuned = _tune(
                        opts,
                        dataset,
                        cluster,
                        out_dir,
                        console,
                        journal,
                        finished=tune_finished if resume else None,
                    )
                    journal.phase_done(phase, tuned)
                metrics.record_phase(
                    phase,
                    trials=tuned.trials,
                    wall_s=tuned.wall_s,
                    lower_bound_s=tuned.compute_bound_s,
                    cpus=tuned.cpus,
                    nodes=cluster.nodes,
                    best_rmse=tuned.best.rmse,
                    efficiency=tuned.compute_bound_s / tuned.wall_s,
                )
                metrics.push_phase(phase)
        grid = _grid_result(specs, cluster, seq, par)
        result = Result(
            run_id=run_id,
            created_utc=created,
            command=_redacted(opts.command),
            environment=environment.capture(),
            options=_options(opts),
            dataset=dataset.describe(),
            cluster=cluster,
            grid=grid,
            tune=tuned,
        )
        write_bundle(result, out_dir)
        write_plots(result, out_dir)
        journal.finish("complete" if grid is None or not grid.mismatches else "inconsistent")
    except BaseException as exc:
        journal.finish("failed", error=(str(exc).strip().splitlines() or [type(exc).__name__])[0])
        metrics.record_failure(
            phase, cpus=cluster.cpus if cluster else 1, nodes=cluster.nodes if cluster else 1
        )
        metrics.push_all()
        metrics.close()
        raise
    if grid is not None and grid.mismatches:
        metrics.close()
        raise RayscaleError(
            f"parallel and sequential metrics differ for {len(grid.mismatches)} config(s), "
            f"e.g. {grid.mismatches[0]} (bundle kept in {out_dir})",
            4,
        )
    metrics.succeeded()
    metrics.close()
    return result, out_dir


def _tune_started(opts: RunOptions, out_dir: Path) -> bool:
    """Whether the interrupted run got as far as creating its Tune experiment (local storage)."""
    return opts.tune.storage is not None or (out_dir / "tune" / "sweep").is_dir()


def _tune(
    opts: RunOptions,
    dataset: Dataset,
    cluster: ClusterInfo,
    out_dir: Path,
    console: Console,
    journal: Journal,
    finished: list[TuneTrial] | None = None,
) -> TuneResult:
    tune_opts = replace(opts.tune, cpus_per_trial=opts.cpus_per_trial, seed=opts.seed)
    out_dir.mkdir(parents=True, exist_ok=True)  # Tune's storage lives in the bundle
    total = count_trials(tune_opts.space, tune_opts.samples) - len(finished or [])
    with progress_bar(console, "Tune sweep (XGBoost)", total) as tick:
        return run_sweep(
            dataset,
            tune_opts,
            cluster.cpus,
            out_dir,
            on_trial=_logged(tick, journal, "tune", 1),
            finished=finished,
        )


def _options_from(stored: dict[str, Any], run_dir: Path) -> RunOptions:
    """RunOptions back from run.json (the inverse of :func:`_options`)."""
    fields = dict(stored)
    tune = TuneOptions(**fields.pop("tune"))
    fields["phases"] = tuple(fields["phases"])
    fields["output"] = run_dir
    if fields.get("push_gateway") and "***@" in fields["push_gateway"]:
        fields["push_gateway"] = None  # its credentials were never stored; pushes stay off on resume
    return RunOptions(**fields, tune=tune)


def _options(opts: RunOptions) -> dict:
    """The options as stored: through JSON once (tuples → lists, paths → str), credentials redacted."""
    stored = asdict(opts)
    del stored["command"]
    if opts.push_gateway:
        stored["push_gateway"] = redact_url(opts.push_gateway)
    return json.loads(json.dumps(stored, default=str))


def _redacted(command: list[str]) -> list[str]:
    """The command line with credentials in URLs (``--push-gateway=https://user:pw@…``) hidden."""

    def one(arg: str) -> str:
        if "://" not in arg:
            return arg
        option, sep, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        return option + sep + redact_url(value)

    return [one(arg) for arg in command]
