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
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from rayscale.cluster import check_cpus_per_trial
from rayscale.datasets import Dataset
from rayscale.errors import RayscaleError, TrialFailed
from rayscale.runners import Arrays, arrays, scores, where
from rayscale.schema import TuneModel, TuneReport, TuneResult, TuneTrial

# The default space: 2 values on each of 5 axes, 32 configs, from cautious to aggressive.
DEFAULT_SPACE: dict[str, Any] = {
    "learning_rate": [0.03, 0.1],
    "max_depth": [2, 4],
    "subsample": [0.8, 1.0],
    "colsample_bytree": [0.8, 1.0],
    "min_child_weight": [1, 5],
}
DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")
# Parameters xgboost.train understands that a space may sweep (a typo fails up front).
XGB_PARAMS = {
    "learning_rate",
    "eta",
    "max_depth",
    "subsample",
    "colsample_bytree",
    "colsample_bylevel",
    "colsample_bynode",
    "min_child_weight",
    "gamma",
    "min_split_loss",
    "reg_alpha",
    "alpha",
    "reg_lambda",
    "lambda",
    "max_leaves",
    "max_bin",
    "grow_policy",
    "tree_method",
    "max_delta_step",
}
YAML_EXPONENT = re.compile(r"^[+-]?\d+[eE][+-]?\d+$")
TEXT_PARAMS = {"grow_policy", "tree_method"}  # every other parameter takes numbers


@dataclass
class TuneOptions:
    """How the sweep runs. The defaults are the fast path; ``tune_defaults()`` is Tune's own."""

    space: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SPACE))
    samples: int | None = None  # None: grid over list values; N: random sampling of N configs
    max_rounds: int = 300
    scheduler: Literal["asha", "none"] = "asha"
    grace_period: int = 50
    reduction_factor: int = 3
    report_every: int = 25
    cpus_per_trial: int = 1
    max_concurrent: int | None = None  # None: cluster CPUs // cpus_per_trial
    reuse_actors: bool = True
    checkpoint: bool = False
    loggers: bool = False
    max_failures: int = 2
    storage: str | None = None  # None: <bundle>/tune
    seed: int = 42
    metric: Literal["rmse", "val_rmse"] = "rmse"  # what ASHA and the best go by

    @classmethod
    def tune_defaults(cls, **overrides: Any) -> TuneOptions:
        """Tune as it comes: per-round reports, a checkpoint each report, loggers, fresh actors."""
        base = {"report_every": 1, "checkpoint": True, "loggers": True, "reuse_actors": False}
        return cls(**{**base, **overrides})


def load_space(path: str | None) -> dict[str, Any]:
    """The search space from YAML (``space:`` mapping) or the built-in default."""
    if path is None:
        return dict(DEFAULT_SPACE)
    file = Path(path)
    if not file.is_file():
        raise RayscaleError(f"search space file not found: {path}")
    try:
        document = yaml.safe_load(file.read_text())
    except yaml.YAMLError:
        raise RayscaleError(f"search space file {path} is not valid YAML") from None
    if not isinstance(document, dict) or not isinstance(document.get("space"), dict) or not document["space"]:
        raise RayscaleError(f"search space file {path} needs a non-empty 'space:' mapping")
    return {name: _numbers(value) for name, value in document["space"].items()}


def _number(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` (exponent, no dot) as a string: such a string becomes the number.
    Anything quoted stays what it is (``"5"`` is text, and refused for a numeric parameter)."""
    if isinstance(value, str) and YAML_EXPONENT.match(value.strip()):
        return float(value)
    return value


def _numbers(value: Any) -> Any:
    if isinstance(value, list):
        return [_number(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    return _number(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_values(name: str, values: list[Any]) -> None:
    """A numeric parameter takes numbers only; a text one takes text only (no mixing)."""
    if name in TEXT_PARAMS:
        wrong = [v for v in values if not isinstance(v, str)]
        kind = "text"
    else:
        wrong = [v for v in values if not _is_number(v)]
        kind = "numbers"
    if wrong:
        raise RayscaleError(f"search space: {name!r} takes {kind}; got {wrong[0]!r}")


def validate_space(space: dict[str, Any], samples: int | None) -> None:
    for name, value in space.items():
        if name not in XGB_PARAMS:
            raise RayscaleError(f"search space: unknown XGBoost parameter {name!r}")
        if isinstance(value, list):
            if not value:
                raise RayscaleError(f"search space: {name!r} has no values")
            _check_values(name, value)
        elif isinstance(value, dict):
            if len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
                raise RayscaleError(
                    f"search space: {name!r} must be a list or one of {', '.join(DISTRIBUTIONS)}"
                )
            kind, bounds = next(iter(value.items()))
            if not isinstance(bounds, list) or not bounds:
                raise RayscaleError(f"search space: {name!r} {kind} needs a list of values")
            _check_values(name, bounds)
            if kind != "choice" and (len(bounds) != 2 or bounds[0] >= bounds[1]):
                raise RayscaleError(f"search space: {name!r} {kind} needs [low, high] with low < high")
            if samples is None:
                raise RayscaleError(
                    f"search space: {name!r} is a distribution; random sampling needs --samples N"
                )
        elif isinstance(value, int | float | str):
            _check_values(name, [value])
        else:
            raise RayscaleError(f"search space: {name!r} must be a value, a list or a distribution")


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


def count_trials(space: dict[str, Any], samples: int | None) -> int:
    """How many trials a space yields: ``samples`` when sampling, else the grid's size."""
    if samples is not None:
        return samples
    return int(np.prod([len(v) for v in space.values() if isinstance(v, list)]))


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
    space = opts.space
    check_options(opts)
    check_cpus_per_trial(opts.cpus_per_trial, cluster_cpus)
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "0" if opts.loggers else "1"
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the new console output ignores verbose=0
    # Tune saves its experiment state at most every 10 s by default; a trial that finished inside
    # that window would run again after a resume. Once a second is a few kB, and keeps it tight.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    max_concurrent = opts.max_concurrent or max(1, cluster_cpus // opts.cpus_per_trial)
    scheduler = (
        ASHAScheduler(
            time_attr="rounds",
            max_t=opts.max_rounds,
            grace_period=opts.grace_period,
            reduction_factor=opts.reduction_factor,
        )
        if opts.scheduler == "asha"
        else FIFOScheduler()
    )
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
    param_space = to_param_space(space, opts.samples, opts.seed)
    experiment = f"{storage.rstrip('/')}/sweep"
    if finished is not None:
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
        return _fit_and_summarise(
            tuner, collector, dataset, opts, cluster_cpus, max_concurrent, storage, finished
        )
    collector = _collector(on_trial, opts.max_rounds, storage)
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=opts.metric,
            mode="min",
            scheduler=scheduler,
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
    return _fit_and_summarise(tuner, collector, dataset, opts, cluster_cpus, max_concurrent, storage, [])


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
            "tune",
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


def check_options(opts: TuneOptions) -> None:
    """Everything about the sweep that can be checked before any cluster work."""
    validate_space(opts.space, opts.samples)
    for name in ("max_rounds", "report_every", "grace_period", "cpus_per_trial"):
        if getattr(opts, name) < 1:
            raise RayscaleError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(opts, name)}")
    if opts.samples is not None and opts.samples < 1:
        raise RayscaleError(f"--samples must be at least 1, got {opts.samples}")
    if opts.reduction_factor < 2:
        raise RayscaleError(f"--reduction-factor must be at least 2, got {opts.reduction_factor}")
    if opts.scheduler == "asha" and opts.grace_period > opts.max_rounds:
        raise RayscaleError(f"--grace-period {opts.grace_period} exceeds --max-rounds {opts.max_rounds}")


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
