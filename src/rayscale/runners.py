"""The grid's two runners: sequential in the driver, and one Ray task per config.

Both call :func:`fit_and_score`, so the only difference between them is where and when each
fit runs; their metrics must agree exactly (checked in :mod:`rayscale.summary`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rayscale.datasets import Dataset
from rayscale.errors import RayscaleError
from rayscale.grids import TrialSpec
from rayscale.results import TrialRecord

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
OnTrial = Callable[[TrialRecord], None]


def arrays(dataset: Dataset) -> Arrays:
    return dataset.X_train, dataset.y_train, dataset.X_test, dataset.y_test


def where() -> tuple[str, str]:
    """(node IP, node id) of the calling process; the node id is empty outside Ray."""
    import ray

    node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    return ray.util.get_node_ip_address(), node_id


def fit_and_score(params: dict[str, Any], data: Arrays) -> dict[str, Any]:
    """Fit one GradientBoostingRegressor and score it on the hold-out set."""
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    X_train, y_train, X_test, y_test = data
    start_ts = time.time()
    t0 = time.perf_counter()
    model = GradientBoostingRegressor(**params).fit(X_train, y_train)
    t1 = time.perf_counter()
    predicted = model.predict(X_test)
    t2 = time.perf_counter()
    node, node_id = where()
    return {
        "rmse": float(np.sqrt(mean_squared_error(y_test, predicted))),
        "r2": float(r2_score(y_test, predicted)),
        "mae": float(mean_absolute_error(y_test, predicted)),
        "fit_s": t1 - t0,
        "predict_s": t2 - t1,
        "node": node,
        "node_id": node_id,
        "pid": os.getpid(),
        "start_ts": start_ts,
        "end_ts": time.time(),
    }


def _record(spec: TrialSpec, cost: float, outcome: dict[str, Any], submit_ts: float) -> TrialRecord:
    # Clocks of different hosts can disagree by milliseconds; a queue time is never negative.
    queue_s = max(0.0, outcome["start_ts"] - submit_ts)
    return TrialRecord(index=spec.index, params=spec.params, cost=cost, queue_s=queue_s, **outcome)


def run_sequential(
    specs: Sequence[TrialSpec], dataset: Dataset, on_trial: OnTrial | None = None
) -> tuple[float, list[TrialRecord]]:
    """Fit every config one after another in this process; return (wall seconds, records)."""
    data = arrays(dataset)
    records = []
    started = time.perf_counter()
    for spec in specs:
        submit_ts = time.time()
        record = _record(
            spec, spec.cost(dataset.n_train, dataset.n_features), fit_and_score(spec.params, data), submit_ts
        )
        records.append(record)
        if on_trial:
            on_trial(record)
    return time.perf_counter() - started, records


def _remote_fit() -> Any:
    import ray

    return ray.remote(max_retries=3)(fit_and_score)


def _warm_task(data: Arrays, hold_s: float) -> int:
    """Import the estimator, touch the shared data, fit a tiny model, then hold the CPU."""
    from sklearn.ensemble import GradientBoostingRegressor

    started = time.perf_counter()
    X_train, y_train, _, _ = data
    GradientBoostingRegressor(n_estimators=2, max_depth=1).fit(X_train[:64], y_train[:64])
    time.sleep(max(0.0, hold_s - (time.perf_counter() - started)))
    return os.getpid()


class RayGridRunner:
    """Runs a grid as Ray tasks against data put once in the object store.

    ``warm_up`` starts one worker per trial slot (each imports scikit-learn and reads the data)
    so that timed rounds measure the steady state; its cost is reported as ``warmup_s``.
    """

    def __init__(self, dataset: Dataset, cpus_per_trial: float, cluster_cpus: int) -> None:
        import ray

        if cpus_per_trial <= 0:
            raise RayscaleError(f"--cpus-per-trial must be positive, got {cpus_per_trial}")
        if cpus_per_trial > cluster_cpus:
            raise RayscaleError(
                f"--cpus-per-trial {cpus_per_trial:g} is more than the cluster's {cluster_cpus} CPUs: "
                "no trial could ever be scheduled"
            )
        self.dataset = dataset
        self.cpus_per_trial = cpus_per_trial
        self.slots = max(1, int(cluster_cpus // cpus_per_trial))
        self.data_ref = ray.put(arrays(dataset))
        self._fit = _remote_fit().options(num_cpus=cpus_per_trial)

    def warm_up(self, hold_s: float = 0.3) -> float:
        import ray

        started = time.perf_counter()
        task = ray.remote(_warm_task).options(num_cpus=self.cpus_per_trial)
        ray.get([task.remote(self.data_ref, hold_s) for _ in range(self.slots)])
        return time.perf_counter() - started

    def run(
        self, specs: Sequence[TrialSpec], on_trial: OnTrial | None = None
    ) -> tuple[float, list[TrialRecord]]:
        """One timed round: submit longest-expected-first, collect as tasks finish."""
        import ray

        n, f = self.dataset.n_train, self.dataset.n_features
        ordered = sorted(specs, key=lambda s: s.cost(n, f), reverse=True)
        started = time.perf_counter()
        submitted: dict[ray.ObjectRef, tuple[TrialSpec, float]] = {}
        for spec in ordered:
            submit_ts = time.time()
            submitted[self._fit.remote(spec.params, self.data_ref)] = (spec, submit_ts)
        pending = list(submitted)
        records = []
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            if pending:  # take every other finished task too, without waiting
                more, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
                ready += more
            for ref, outcome in zip(ready, _get_all(ready), strict=True):
                spec, submit_ts = submitted[ref]
                record = _record(spec, spec.cost(n, f), outcome, submit_ts)
                records.append(record)
                if on_trial:
                    on_trial(record)
        wall = time.perf_counter() - started
        records.sort(key=lambda r: r.index)
        return wall, records


def _get_all(refs: list) -> list[dict[str, Any]]:
    import ray

    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if exc.cause is not None else exc
        raise RayscaleError(
            f"a trial failed on the cluster: {type(cause).__name__}: {cause}".splitlines()[0], 3
        ) from None
