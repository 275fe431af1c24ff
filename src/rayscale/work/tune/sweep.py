"""The Ray Tune phase: a sweep with ASHA (XGBoost by default; :mod:`rayscale.work.tune.families`),
against the model's library-default baseline.

Tune's defaults (a report every boosting round, a checkpoint per report, the JSON/CSV/
TensorBoard loggers, a fresh actor per trial) cost far more than the boosting itself on
short trials. The fast path is the default here. Actors are reused, the trainable reports
every ``report_every`` rounds, it checkpoints only when asked, loggers are off unless asked,
and the data reaches the trials once through the object store (``tune.with_parameters``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rayscale.errors import RayscaleError, TrialFailed
from rayscale.options.commands import TUNE, TuneOptions, check_cpus_per_trial
from rayscale.options.scoring import METRICS, Task, direction, ranking_key
from rayscale.results.schema import TuneModel, TuneReport, TuneResult, TuneTrial, trial_slots
from rayscale.work.cluster.session import where
from rayscale.work.data import Arrays, Dataset, arrays
from rayscale.work.sim.tune_replay import scheduler_for
from rayscale.work.tune.families import TuneFamily, family_for


def grid_configs(space: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Every config of a grid space, in an order shuffled with ``seed``.

    Asynchronous successive halving promotes a trial when it beats the share of results its rung
    has seen so far, which assumes trials arrive in random order. Tune expands a grid in a fixed
    order, and if later configs are systematically stronger early on (a higher learning rate,
    deeper trees), nearly every arrival beats its predecessors and is promoted. Shuffling
    restores the assumption.
    """
    names = list(space)
    axes = [value if isinstance(value, list) else [value] for value in space.values()]
    configs = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes)]
    random.Random(seed).shuffle(configs)
    return configs


def to_param_space(space: dict[str, Any], samples: int | None, seed: int) -> dict[str, Any]:
    """A grid becomes one ``grid_search`` over shuffled configs (under ``params``); for random
    sampling, lists become ``choice`` and distributions map to Tune's."""
    from ray import tune

    if samples is None:
        return {"params": tune.grid_search(grid_configs(space, seed))}
    out: dict[str, Any] = {}
    for name, value in space.items():
        if isinstance(value, list):
            out[name] = tune.choice(value)
        elif isinstance(value, dict):
            kind, bounds = next(iter(value.items()))
            out[name] = tune.choice(bounds) if kind == "choice" else getattr(tune, kind)(*bounds)
        else:
            out[name] = value
    return {"params": out}


def run_trial(
    config: dict[str, Any],
    data: Arrays,
    data_key: str,
    model: str,
    task: Task,
    n_classes: int,
    max_rounds: int,
    report_every: int,
    nthread: int,
    seed: int,
    checkpoint: bool,
) -> None:
    """One Tune trial: train up to ``max_rounds``, reporting every metric of the task to Tune
    every ``report_every`` rounds (``val_`` prefixed on the validation split, when there is one)."""
    from ray import tune

    family = family_for(model, task, n_classes)
    family.load()  # the library's import is the worker's start-up, not the trial's
    start_ts = time.time()
    node, node_id = where()
    family.data_key = data_key
    test, val = family.eval_sets(data, nthread)
    y_test, y_val = data[3], data[5]
    fixed = {"node": node, "node_id": node_id, "pid": os.getpid(), "start_ts": start_ts}

    def emit(rounds: int, compute_s: float, trained: Any) -> None:
        result: dict[str, Any] = {**family.scores(trained, test, y_test), "rounds": rounds}
        result["compute_s"] = compute_s
        if val is not None and y_val is not None:
            result |= {f"val_{k}": v for k, v in family.scores(trained, val, y_val).items()}
        result |= {**fixed, "end_ts": time.time()}
        if not checkpoint:
            tune.report(result)
            return
        with tempfile.TemporaryDirectory() as folder:
            family.save(trained, folder)
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))

    family.train(config["params"], data, max_rounds, report_every, nthread, seed, emit)


def baseline(dataset: Dataset, model: str, nthread: int, seed: int) -> TuneModel:
    """The Tune model with its library defaults (``XGBRegressor()``, ``LGBMClassifier()``, …) on
    the same split; the parameters recorded are the effective ones."""
    family = family_for(model, dataset.task, len(dataset.classes))
    params, fitted = family.baseline(arrays(dataset), nthread, seed)
    return TuneModel(params=params, metrics=family.scores(fitted, dataset.X_test, dataset.y_test))


def _split(result: dict[str, Any], task: Task) -> tuple[dict[str, float], dict[str, float]]:
    """A reported result's task metrics: (on the test split, on the validation split)."""
    names = METRICS[task]
    return (
        {k: result[k] for k in names if k in result},
        {k: result[f"val_{k}"] for k in names if f"val_{k}" in result},
    )


def _report(result: dict[str, Any], task: Task) -> TuneReport:
    metrics, val_metrics = _split(result, task)
    return TuneReport(
        rounds=result["rounds"],
        compute_s=result["compute_s"],
        ts=result.get("end_ts"),
        metrics=metrics,
        val_metrics=val_metrics,
    )


def _tune_trial(
    trial_id: str, config: dict[str, Any], reports: list[dict[str, Any]], max_rounds: int, task: Task
) -> TuneTrial:
    """A trial's record from its config and reported results (the last one is where it ended);
    ``index`` is Tune's trial number."""
    m = reports[-1]
    metrics, val_metrics = _split(m, task)
    return TuneTrial(
        index=int(trial_id.rsplit("_", 1)[-1]),
        trial_id=trial_id,
        params=config["params"],
        metrics=metrics,
        val_metrics=val_metrics,
        reports=[_report(r, task) for r in reports],
        compute_s=m["compute_s"],
        rounds=m["rounds"],
        stopped_early=m["rounds"] < max_rounds,
        node=m["node"],
        node_id=m["node_id"],
        pid=m["pid"],
        start_ts=m["start_ts"],
        end_ts=m["end_ts"],
    )


# Collectors revived from a pickled Tuner (Tuner.restore), by token (the sweep's storage path).
_REVIVED: dict[str, Any] = {}


def _revive_collector(token: str, max_rounds: int, task: Task) -> Any:
    """Unpickling hook: a fresh collector, registered so the resuming code can attach to it."""
    collector = _collector(None, max_rounds, token, task)
    _REVIVED[token] = collector
    return collector


def _collector(on_trial: Callable[[TuneTrial], None] | None, max_rounds: int, token: str, task: Task) -> Any:
    """A Tune callback keeping each trial's last result in the driver; ``on_trial`` gets each
    finished trial's record (progress bar, journal).

    Reading results back from Tune's files would need its loggers, which the fast path turns
    off. Tune pickles its run config to support resuming; the pickle carries an empty collector
    (never the live hook), which on ``Tuner.restore`` registers itself under ``token``.
    """
    from ray import tune

    class TrialCollector(tune.Callback):
        def __init__(self, hook: Callable[[TuneTrial], None] | None = None) -> None:
            self.hook = hook
            self.reports: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
            self.errors: dict[str, str] = {}

        def __reduce__(self) -> tuple[Any, ...]:
            return (_revive_collector, (token, max_rounds, task))

        def on_trial_result(
            self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
        ) -> None:
            self.reports.setdefault(trial.trial_id, (dict(trial.config), []))[1].append(result)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            if self.hook and trial.trial_id in self.reports:
                config, reports = self.reports[trial.trial_id]
                self.hook(_tune_trial(trial.trial_id, config, reports, max_rounds, task))

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.errors[trial.trial_id] = str(getattr(trial, "error_file", "") or "see Tune's logs")

    return TrialCollector(on_trial)


def _trial_dirname(trial: Any) -> str:
    """Short trial directory names (Tune's default spells out the whole config)."""
    return str(trial.trial_id)


def _tidy(experiment: Path) -> None:
    """Remove the trial directories a finished sweep left empty (no loggers, no checkpoints)."""
    for folder, _, _ in os.walk(experiment, topdown=False):
        if Path(folder) != experiment:
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only succeeds when empty


def run_sweep(
    dataset: Dataset,
    opts: TuneOptions,
    cluster_cpus: int,
    bundle: Path,
    on_trial: Callable[[TuneTrial], None] | None = None,
    finished: list[TuneTrial] | None = None,
) -> TuneResult:
    """Run the sweep on the connected Ray cluster and summarise it (Ray must be initialised).

    With ``finished`` (the trials an interrupted run had completed, from its journal) the sweep
    in the bundle's storage continues with ``Tuner.restore``: finished trials are not run again,
    unfinished ones run from their start.
    """
    opts.validate()
    check_cpus_per_trial(opts.cpus_per_trial, cluster_cpus)
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "0" if opts.loggers else "1"
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the new console output ignores verbose=0
    # Tune saves its experiment state at most every 10 s by default; a trial that finished inside
    # that window would run again after a resume. Once a second is a few kB, and keeps it tight.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    from ray import tune

    max_concurrent = opts.max_concurrent or trial_slots(cluster_cpus, opts.cpus_per_trial)
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
            data=arrays(dataset),
            data_key=f"{dataset.spec}|{time.time_ns()}",  # unique per sweep: no stale cache
            model=opts.model,
            task=dataset.task,
            n_classes=len(dataset.classes),
            max_rounds=opts.max_rounds,
            report_every=opts.report_every,
            nthread=opts.cpus_per_trial,
            seed=opts.seed,
            checkpoint=opts.checkpoint,
        ),
        {"cpu": opts.cpus_per_trial},
    )
    storage = opts.storage or str((bundle / "tune").resolve())
    param_space = to_param_space(opts.space, opts.samples, opts.seed)
    if finished is not None:
        tuner, collector = _restored(trainable, param_space, storage, on_trial)
    else:
        collector = _collector(on_trial, opts.max_rounds, storage, dataset.task)
        tuner = _tuner(trainable, param_space, opts, max_concurrent, storage, collector)
    return _fit_and_summarise(
        tuner, collector, dataset, opts, cluster_cpus, max_concurrent, storage, finished or []
    )


def _tuner(
    trainable: Any,
    param_space: dict[str, Any],
    opts: TuneOptions,
    max_concurrent: int,
    storage: str,
    collector: Any,
) -> Any:
    """A new sweep: ASHA (or FIFO) over the space, the collector as its one callback."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=opts.metric,
            mode=opts.mode,
            scheduler=scheduler_for(
                opts.scheduler, opts.max_rounds, opts.grace_period, opts.reduction_factor
            ),
            num_samples=opts.samples or 1,
            max_concurrent_trials=max_concurrent,
            reuse_actors=opts.reuse_actors,
            search_alg=BasicVariantGenerator(random_state=opts.seed),
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name="sweep",
            storage_path=storage,
            verbose=0,
            callbacks=[collector],
            failure_config=tune.FailureConfig(max_failures=opts.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1 if opts.checkpoint else None),
        ),
    )


def _restored(
    trainable: Any, param_space: dict[str, Any], storage: str, on_trial: Callable[[TuneTrial], None] | None
) -> tuple[Any, Any]:
    """An interrupted sweep in ``storage``, continued: finished trials are not run again."""
    from ray import tune

    experiment = f"{storage.rstrip('/')}/sweep"
    if not tune.Tuner.can_restore(experiment):
        raise RayscaleError(f"no Tune sweep to resume at {experiment}", 2)
    _REVIVED.pop(storage, None)
    with contextlib.redirect_stdout(sys.stderr):
        tuner = tune.Tuner.restore(
            experiment,
            trainable=trainable,
            param_space=param_space,
            resume_unfinished=True,
            restart_errored=True,
        )
    collector = _REVIVED.pop(storage)
    collector.hook = on_trial
    return tuner, collector


def _fit_and_summarise(
    tuner: Any,
    collector: Any,
    dataset: Dataset,
    opts: TuneOptions,
    cluster_cpus: int,
    max_concurrent: int,
    storage: str,
    finished: list[TuneTrial],
) -> TuneResult:
    started_ts = time.time()
    started = time.perf_counter()
    # Tune prints to stdout (reserved for --json) and warns that it cannot read back the result
    # files the fast path does not write; the collector already holds every result.
    quiet = logging.getLogger("ray.tune")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            tuner.fit()
    finally:
        quiet.setLevel(level)
    wall = time.perf_counter() - started
    if collector.errors:
        trial_id, where_ = next(iter(collector.errors.items()))
        raise TrialFailed(
            f"{len(collector.errors)} Tune trial(s) failed, e.g. {trial_id} ({where_})",
            TUNE.key,
            len(collector.errors),
        )
    fresh = [
        _tune_trial(trial_id, config, reports, opts.max_rounds, dataset.task)
        for trial_id, (config, reports) in collector.reports.items()
    ]
    # A trial the journal saw finish but Tune had not yet saved as finished (within the last second
    # before the crash) runs again; its first, journaled record is the one kept, and it is counted.
    done = {t.trial_id for t in finished}
    reran = sorted(t.trial_id for t in fresh if t.trial_id in done)
    trials = sorted([*finished, *(t for t in fresh if t.trial_id not in done)], key=lambda t: t.index)
    if not trials:
        raise RayscaleError("the Tune sweep reported no results", 3)
    if "://" not in storage:
        _tidy(Path(storage) / "sweep")
    if finished:  # the wall of a resumed sweep: its first session's span plus this one's
        started_ts = min(t.start_ts for t in finished)
        wall += max(t.end_ts for t in finished) - started_ts
    result = summarise(
        trials,
        opts,
        wall,
        started_ts,
        cluster_cpus,
        max_concurrent,
        storage,
        baseline(dataset, opts.model, opts.cpus_per_trial, opts.seed),
        family_for(opts.model, dataset.task, len(dataset.classes)),
    )
    if finished:
        result.resumed_with = len(finished)
        result.reran_after_resume = reran
    return result


def summarise(
    trials: list[TuneTrial],
    opts: TuneOptions,
    wall: float,
    started_ts: float,
    cpus: int,
    max_concurrent: int,
    storage: str,
    base: TuneModel,
    family: TuneFamily,
) -> TuneResult:
    metric = opts.metric.removeprefix("val_")
    compute = sum(t.compute_s for t in trials)
    best = min(trials, key=lambda t: (ranking_key(metric, t.selection(metric)), t.index))
    used = min(cpus, max_concurrent * opts.cpus_per_trial)
    bound = compute / used
    gain = best.metrics[metric] - base.metrics[metric]
    return TuneResult(
        model=opts.model,
        unit=family.unit,
        task=family.task,
        metric=metric,
        scheduler=opts.scheduler,
        wall_s=wall,
        compute_s=compute,
        cpus=cpus,
        cpus_per_trial=opts.cpus_per_trial,
        max_concurrent=max_concurrent,
        max_rounds=opts.max_rounds,
        report_every=opts.report_every,
        grace_period=opts.grace_period if opts.scheduler == "asha" else None,
        reduction_factor=opts.reduction_factor if opts.scheduler == "asha" else None,
        reuse_actors=opts.reuse_actors,
        checkpoint=opts.checkpoint,
        loggers=opts.loggers,
        sampling="grid" if opts.samples is None else "random",
        rounds_run=sum(t.rounds for t in trials),
        rounds_budget=len(trials) * opts.max_rounds,
        stopped_early=sum(t.stopped_early for t in trials),
        compute_bound_s=bound,
        overhead_s=wall - bound,
        startup_s=max(0.0, min(t.start_ts for t in trials) - started_ts),
        storage=storage,
        trials=trials,
        baseline=base,
        best=TuneModel(
            params=best.params, metrics=best.metrics, val_metrics=best.val_metrics, rounds=best.rounds
        ),
        # the share of the baseline's score the tuning gained, positive when it is better
        improvement_pct=100.0 * gain / abs(base.metrics[metric]) * (1 if direction(metric) == "max" else -1),
    )
