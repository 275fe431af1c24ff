"""The Ray Tune phase: an XGBoost sweep with ASHA, against a library-default baseline.

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

import numpy as np

from rayscale.datasets import Dataset
from rayscale.errors import RayscaleError, TrialFailed
from rayscale.options import TUNE, TuneOptions, check_cpus_per_trial
from rayscale.runners import Arrays, arrays, where
from rayscale.schema import TuneModel, TuneReport, TuneResult, TuneTrial, trial_slots
from rayscale.tasks import regression_scores as scores


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


def booster_params(config: dict[str, Any], nthread: int, seed: int) -> dict[str, Any]:
    return {
        "objective": "reg:squarederror",
        "tree_method": "hist",
        "nthread": nthread,
        "seed": seed,
        **config,
    }


def _reporting_callback(
    every: int,
    total: int,
    dtest: Any,
    y_test: np.ndarray,
    validation: tuple[Any, np.ndarray] | None,
    emit: Callable[[dict[str, Any], Any], None],
) -> Any:
    """An xgboost callback that times boosting alone and emits metrics every ``every`` rounds
    (test metrics, and the validation RMSE when there is a validation split)."""
    import xgboost as xgb

    class Reporter(xgb.callback.TrainingCallback):
        def __init__(self) -> None:
            self.compute_s = 0.0
            self.mark = 0.0

        def before_training(self, model: Any) -> Any:
            self.mark = time.perf_counter()
            return model

        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            self.compute_s += time.perf_counter() - self.mark
            rounds = epoch + 1
            if rounds % every == 0 or rounds == total:
                metrics: dict[str, Any] = scores(y_test, model.predict(dtest))
                if validation is not None:
                    metrics["val_rmse"] = scores(validation[1], model.predict(validation[0]))["rmse"]
                emit({**metrics, "rounds": rounds, "compute_s": self.compute_s}, model)
            self.mark = time.perf_counter()
            return False

    return Reporter()


# One (train, test, validation) DMatrix set per worker process, keyed by what the data is: a
# reused actor runs many trials on the same table and builds it once.
_DMATRICES: dict[str, tuple[Any, Any, Any]] = {}


def _dmatrices(data_key: str, data: Arrays, nthread: int) -> tuple[Any, Any, Any]:
    import xgboost as xgb

    if data_key not in _DMATRICES:
        _DMATRICES.clear()
        X_train, y_train, X_test, _, X_val, _ = data
        _DMATRICES[data_key] = (
            xgb.DMatrix(X_train, label=y_train, nthread=nthread),
            xgb.DMatrix(X_test, nthread=nthread),
            None if X_val is None else xgb.DMatrix(X_val, nthread=nthread),
        )
    return _DMATRICES[data_key]


def xgb_trainable(
    config: dict[str, Any],
    data: Arrays,
    data_key: str,
    max_rounds: int,
    report_every: int,
    nthread: int,
    seed: int,
    checkpoint: bool,
) -> None:
    """One Tune trial: boost up to ``max_rounds``, reporting to Tune every ``report_every`` rounds."""
    import xgboost as xgb
    from ray import tune

    start_ts = time.time()
    node, node_id = where()
    dtrain, dtest, dval = _dmatrices(data_key, data, nthread)
    y_test, y_val = data[3], data[5]
    fixed = {"node": node, "node_id": node_id, "pid": os.getpid(), "start_ts": start_ts}

    def emit(metrics: dict[str, Any], model: Any) -> None:
        result = {**metrics, **fixed, "end_ts": time.time()}
        if not checkpoint:
            tune.report(result)
            return
        with tempfile.TemporaryDirectory() as folder:
            model.save_model(os.path.join(folder, "model.ubj"))
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))

    validation = None if dval is None or y_val is None else (dval, y_val)
    callback = _reporting_callback(report_every, max_rounds, dtest, y_test, validation, emit)
    params = booster_params(config["params"], nthread, seed)
    xgb.train(params, dtrain, num_boost_round=max_rounds, callbacks=[callback])


def baseline(dataset: Dataset, nthread: int, seed: int) -> TuneModel:
    """XGBoost with its library defaults (``XGBRegressor()``) on the same split.

    The parameters recorded are the effective ones, read back from the trained booster.
    """
    import json

    import xgboost as xgb

    model = xgb.XGBRegressor(n_jobs=nthread, random_state=seed).fit(dataset.X_train, dataset.y_train)
    booster = model.get_booster()
    tree = json.loads(booster.save_config())["learner"]["gradient_booster"]["tree_train_param"]
    params: dict[str, Any] = {
        "learning_rate": round(float(tree["eta"]), 6),
        "n_estimators": booster.num_boosted_rounds(),
    }
    params.update({k: float(tree[k]) for k in ("subsample", "colsample_bytree", "min_child_weight")})
    params["max_depth"] = int(tree["max_depth"])
    return TuneModel.model_validate(
        {"params": params, **scores(dataset.y_test, model.predict(dataset.X_test))}
    )


def _tune_trial(
    trial_id: str, config: dict[str, Any], reports: list[dict[str, Any]], max_rounds: int
) -> TuneTrial:
    """A trial's record from its config and reported results (the last one is where it ended);
    ``index`` is Tune's trial number."""
    m = reports[-1]
    return TuneTrial(
        index=int(trial_id.rsplit("_", 1)[-1]),
        trial_id=trial_id,
        params=config["params"],
        rmse=m["rmse"],
        r2=m["r2"],
        mae=m["mae"],
        val_rmse=m.get("val_rmse"),
        reports=[
            TuneReport(
                rounds=r["rounds"],
                rmse=r["rmse"],
                compute_s=r["compute_s"],
                val_rmse=r.get("val_rmse"),
                ts=r.get("end_ts"),
            )
            for r in reports
        ],
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


def _revive_collector(token: str, max_rounds: int) -> Any:
    """Unpickling hook: a fresh collector, registered so the resuming code can attach to it."""
    collector = _collector(None, max_rounds, token)
    _REVIVED[token] = collector
    return collector


def _collector(on_trial: Callable[[TuneTrial], None] | None, max_rounds: int, token: str) -> Any:
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
            return (_revive_collector, (token, max_rounds))

        def on_trial_result(
            self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
        ) -> None:
            self.reports.setdefault(trial.trial_id, (dict(trial.config), []))[1].append(result)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            if self.hook and trial.trial_id in self.reports:
                config, reports = self.reports[trial.trial_id]
                self.hook(_tune_trial(trial.trial_id, config, reports, max_rounds))

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


def scheduler_for(
    kind: str, max_rounds: int, grace_period: int, reduction_factor: int, metric: str | None = None
) -> Any:
    """Ray Tune's scheduler for a sweep: ASHA over boosting rounds, or FIFO (no early stopping).
    With ``metric`` the scheduler judges that metric itself, as predict's replay needs (a live
    sweep names its metric in ``TuneConfig`` instead, and Tune refuses it in both places)."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if kind != "asha":
        return FIFOScheduler()
    judged: dict[str, Any] = {"metric": metric, "mode": "min"} if metric else {}
    return ASHAScheduler(
        time_attr="rounds",
        max_t=max_rounds,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
        **judged,
    )


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
            xgb_trainable,
            data=arrays(dataset),
            data_key=f"{dataset.spec}|{time.time_ns()}",  # unique per sweep: no stale cache
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
        collector = _collector(on_trial, opts.max_rounds, storage)
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
            mode="min",
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
        _tune_trial(trial_id, config, reports, opts.max_rounds)
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
        baseline(dataset, opts.cpus_per_trial, opts.seed),
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
) -> TuneResult:
    compute = sum(t.compute_s for t in trials)
    best = min(trials, key=lambda t: (t.selection_rmse, t.index))
    used = min(cpus, max_concurrent * opts.cpus_per_trial)
    bound = compute / used
    return TuneResult(
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
            params=best.params,
            rmse=best.rmse,
            r2=best.r2,
            mae=best.mae,
            rounds=best.rounds,
            val_rmse=best.val_rmse,
        ),
        improvement_pct=100.0 * (base.rmse - best.rmse) / base.rmse,
    )
