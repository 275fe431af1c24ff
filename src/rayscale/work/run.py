"""``rayscale run``: the grid sequentially and as Ray tasks, then the Tune sweep, into one bundle.

The run, on one screen (:func:`execute`): validate → connect → :func:`rayscale.work.execution.loop.run_phases`
(``on_run_start``, where the journal is opened, so a refused run leaves nothing; each phase's
rounds, ``on_trial`` per trial, ``on_phase_end`` per phase) → write the bundle →
:meth:`rayscale.work.execution.loop.Context.end`, the one place a run ends, by success, exception
or a lost head.
The plots are the caller's (a view, :mod:`rayscale.views.report`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from rayscale.errors import RayscaleError
from rayscale.options.commands import (
    TUNE,
    RunOptions,
    check_cpus_per_trial,
    check_output_dir,
    from_stored,
)
from rayscale.options.files import JOURNAL_FILE, RESULT_FILE
from rayscale.results.bundle import (
    make_dir,
    new_run_id,
    read_partial,
    redacted_command,
    stored_options,
    utc_now,
    write_bundle,
)
from rayscale.results.schema import ClusterInfo, Result, TuneTrial
from rayscale.work import environment
from rayscale.work.cluster.session import (
    HeadWatch,
    check_reachable,
    gcs_address,
    other_jobs_warning,
    ray_session,
)
from rayscale.work.data import Dataset
from rayscale.work.execution.journal import Journal
from rayscale.work.execution.loop import Callback, CallbackList, Context, run_phases
from rayscale.work.execution.observers import JournalCallback, MetricsCallback
from rayscale.work.execution.phases import build
from rayscale.work.execution.prometheus import RunMetrics, workload_label
from rayscale.work.execution.workload import load_work
from rayscale.work.grid.configs import TrialSpec
from rayscale.work.grid.trials import refit
from rayscale.work.stopping import stop_on_sigterm, wall_limit


def import_ahead(opts: RunOptions) -> None:
    """Import, on a background thread, the libraries the run's later steps will need (the Tune
    phase's ``ray.tune`` and XGBoost, the plots' matplotlib), while the main thread loads the data
    and waits for Ray to start. Python's import lock makes a later import of the same module wait
    for this one, so nothing is imported twice; an import that fails here fails again, with its
    real error, where the run needs it."""
    names = ["sklearn.ensemble"]
    if TUNE.option in opts.phases:
        names += [opts.tune.model if opts.tune.model in ("xgboost", "lightgbm") else "sklearn", "ray.tune"]
    names.append("matplotlib.figure")

    def load() -> None:
        for name in names:
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    threading.Thread(target=load, name="rayscale-import-ahead", daemon=True).start()


def run_benchmark(opts: RunOptions, observers: Sequence[Callback] = ()) -> tuple[Result, Path]:
    """Run the selected phases and write the bundle; return the result and its directory.
    ``observers`` (the CLI's progress view) see the run loop's events, warnings and a lost head."""
    _check(opts)
    import_ahead(opts)
    opts, dataset, specs = load_work(opts)
    run_id = new_run_id()
    out_dir = opts.output or Path("results") / run_id
    check_output_dir(out_dir)
    header = {
        "kind": "run",
        "run_id": run_id,
        "created_utc": utc_now(),
        "command": redacted_command(opts.command),
        "options": stored_options(opts),
    }
    return execute(opts, dataset, specs, out_dir, header, lambda: Journal(out_dir, header), observers)


def resume_benchmark(run_dir: Path, observers: Sequence[Callback] = ()) -> tuple[Result, Path]:
    """Finish an interrupted run: phases it completed are kept, an interrupted grid phase runs again,
    and an interrupted Tune sweep continues (``Tuner.restore``) without re-running finished trials."""
    if (run_dir / RESULT_FILE).exists():
        raise RayscaleError(f"--resume {run_dir}: the run already finished (it has {RESULT_FILE})")
    manifest = read_partial(run_dir).manifest  # raises for anything that is not a rayscale run bundle
    if manifest.get("kind") != "run" or "options" not in manifest:
        raise RayscaleError(f"--resume {run_dir}: run.json does not describe a rayscale run")
    opts = from_stored(manifest["options"], run_dir)
    _check(replace(opts, output=None))
    opts, dataset, specs = load_work(opts)
    journal = Journal.reopen(run_dir)
    finished = [TuneTrial.model_validate(row) for row in journal.rows(TUNE.key)]
    tune_started = opts.tune.storage is not None or (run_dir / "tune" / "sweep").is_dir()
    header = {k: manifest[k] for k in ("kind", "run_id", "command", "options")}
    header["created_utc"] = manifest.get("created_utc", utc_now())
    return execute(
        opts,
        dataset,
        specs,
        run_dir,
        header,
        lambda: journal,
        observers,
        saved=journal.saved_phases(),
        tune_finished=finished if tune_started else None,
    )


def execute(
    opts: RunOptions,
    dataset: Dataset,
    specs: list[TrialSpec],
    out_dir: Path,
    header: dict[str, Any],
    open_journal: Callable[[], Journal],
    observers: Sequence[Callback] = (),
    saved: dict[str, dict[str, Any]] | None = None,
    tune_finished: list[TuneTrial] | None = None,
) -> tuple[Result, Path]:
    shown = CallbackList(observers)
    metrics = RunMetrics(
        header["run_id"],
        workload_label(opts.dataset, opts.grid),
        push_gateway=opts.push_gateway,
        strict=opts.strict_metrics,
        warn=shown.on_warning,
    )
    if opts.metrics_port is not None:
        metrics.serve(opts.metrics_port)
    callbacks = CallbackList([JournalCallback(open_journal), MetricsCallback(metrics), *observers])
    for note in dataset.warnings:
        shown.on_warning(f"warning: {note}")
    ctx = Context(opts, dataset, build(opts, tune_finished), specs, out_dir, callbacks)
    before = environment.machine_state()
    kept = f"Finished trials are kept in {out_dir / JOURNAL_FILE}; continue: rayscale run --resume {out_dir}"
    try:
        with (
            wall_limit(opts.max_wall, kept),
            stop_on_sigterm(kept),
            _session(opts) as cluster,
            _head_watch(cluster, ctx),
        ):
            ctx.cluster = cluster
            if cluster is not None:
                check_cpus_per_trial(opts.cpus_per_trial, cluster.cpus)
            if cluster is not None and cluster.mode == "existing" and (line := other_jobs_warning()):
                shown.on_warning(line)
            make_dir(out_dir)
            run_phases(ctx, saved or {})
            if opts.cv and (grid := ctx.grid()) is not None:
                ctx.refit = refit(grid.best, specs[0].estimator, dataset)
        result = Result(
            **header,
            environment={**environment.capture(), "before": before, "after": environment.machine_state()},
            dataset=dataset.describe(),
            cluster=cluster,
            grid=ctx.grid(),
            tune=ctx.results.get(TUNE.key),
        )
        write_bundle(result, out_dir)
    except BaseException as exc:
        ctx.end("failed", exc)
        raise
    ctx.end(result.status)
    if result.grid is not None and result.grid.mismatches:
        raise RayscaleError(
            f"parallel and sequential metrics differ for {len(result.grid.mismatches)} config(s), "
            f"e.g. {result.grid.mismatches[0]} (bundle kept in {out_dir})",
            4,
        )
    return result, out_dir


def _check(opts: RunOptions) -> None:
    """The options, then (in seconds, not Ray's minutes) whether the cluster they name answers."""
    opts.validate()
    if opts.needs_ray:
        check_reachable(opts.address)


def _session(opts: RunOptions) -> AbstractContextManager[ClusterInfo | None]:
    """Connect first when a Ray phase will run: a cluster that cannot fit one trial fails the run
    before any work, and every phase sees the same machine state."""
    if not opts.needs_ray:
        return nullcontext(None)
    return ray_session(opts.address, metrics_port=opts.ray_metrics_port)


def _head_watch(cluster: ClusterInfo | None, ctx: Context) -> AbstractContextManager[Any]:
    """Report a lost head within seconds, through the same ``on_run_end`` as any failure."""
    if cluster is None:
        return nullcontext()

    def lost(address: str) -> None:
        # Runs on the watch thread while the main thread is blocked inside Ray: report, record,
        # and end the process (Ray would abort it a minute later anyway).
        message = (
            f"lost the Ray head at {address} during {ctx.current or 'setup'}; finished trials are kept "
            f"in {ctx.out_dir / JOURNAL_FILE}; continue with: rayscale run --resume {ctx.out_dir}"
        )
        ctx.callbacks.on_head_lost(message)
        ctx.end("failed", RayscaleError(message, 3))
        os._exit(3)

    return HeadWatch(gcs_address(), lost)
