"""What one trial does, wherever it runs: fit a config and score it (:func:`fit_and_score`),
several in a row (:func:`fit_batch`), and the warm-up fit every worker makes first (:func:`warm_fit`)."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from rayscale.options.scoring import score
from rayscale.results.schema import BestModel
from rayscale.work.cluster.session import where
from rayscale.work.data import Dataset, Work
from rayscale.work.grid.configs import DEFAULT_ESTIMATOR, TrialSpec, estimator_class, make_estimator


def fit_and_score(spec: TrialSpec, data: Work) -> dict[str, Any]:
    """Fit one config and score it on the task's metrics: on the hold-out set (and the validation
    split, when there is one), or with ``--cv`` on its fold's held-out rows."""
    X_train, y_train, X_test, y_test, X_val, y_val = data.arrays
    if spec.fold is not None:
        fit_rows, held_out = data.folds[spec.fold]
        X_train, y_train, X_test, y_test = (
            X_train[fit_rows],
            y_train[fit_rows],
            X_train[held_out],
            y_train[held_out],
        )
        X_val = y_val = None
    start_ts = time.time()
    t0 = time.perf_counter()
    model = make_estimator(spec.estimator, spec.params).fit(X_train, y_train)
    t1 = time.perf_counter()
    metrics = score(data.task, model, X_test, y_test, data.n_classes)
    t2 = time.perf_counter()
    node, node_id = where()
    val_metrics = {} if X_val is None else score(data.task, model, X_val, y_val, data.n_classes)  # type: ignore[arg-type]
    return {
        "metrics": metrics,
        "val_metrics": val_metrics,
        "fit_s": t1 - t0,
        "predict_s": t2 - t1,
        "node": node,
        "node_id": node_id,
        "pid": os.getpid(),
        "start_ts": start_ts,
        "end_ts": time.time(),
    }


def refit(best: BestModel, estimator: str, dataset: Dataset) -> BestModel:
    """``--cv``: the chosen config fitted on the whole training split and scored once on the
    untouched test split (as GridSearchCV's ``refit``)."""
    outcome = fit_and_score(TrialSpec(best.index, best.params, estimator), Work.of(dataset))
    scores = {k: outcome["metrics"].get(k) for k in ("rmse", "r2", "mae")}
    return best.model_copy(update={"metrics": outcome["metrics"], **scores})


def fit_batch(specs: list[TrialSpec], data: Work) -> list[dict[str, Any]]:
    """Several trials in one task, one after another; a trial that raises is returned as its
    error, so the driver names the config that failed."""
    out: list[dict[str, Any]] = []
    for spec in specs:
        try:
            out.append(fit_and_score(spec, data))
        except Exception as exc:  # the model's own error, reported for this config
            out.append({"error": f"{type(exc).__name__}: {exc}".splitlines()[0]})
    return out


def _tiny(estimator: str) -> dict[str, Any]:
    """A few trees or iterations of ``estimator``, where it has such a parameter."""
    known = estimator_class(estimator)().get_params()
    return {k: v for k, v in (("n_estimators", 2), ("max_iter", 2), ("max_depth", 1)) if k in known}


def warm_fit(data: Work, hold_s: float, estimator: str = DEFAULT_ESTIMATOR) -> int:
    """Import the estimator, touch the shared data, fit a tiny model, then hold the CPU."""
    started = time.perf_counter()
    X_train, y_train = data.arrays[0], data.arrays[1]
    with contextlib.suppress(Exception):  # best effort: the timed rounds report a real failure
        estimator_class(estimator)(**_tiny(estimator)).fit(X_train[:64], y_train[:64])
    time.sleep(max(0.0, hold_s - (time.perf_counter() - started)))
    return os.getpid()
