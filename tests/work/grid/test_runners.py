"""Runners on a real embedded Ray with 2 CPUs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from rayscale.errors import RayscaleError
from rayscale.options.scoring import DEFAULT_METRIC, direction
from rayscale.results.schema import best_of, cv_means
from rayscale.work.cluster.session import ray_session
from rayscale.work.data import load_dataset, split_folds
from rayscale.work.grid.configs import TrialSpec, estimator_class, load_grid, per_fold
from rayscale.work.grid.runners import RayGridRunner, mismatches, run_sequential
from rayscale.work.grid.trials import refit

pytestmark = pytest.mark.slow


def test_an_embedded_ray_never_joins_a_cluster_already_running_here() -> None:
    from rayscale.work.cluster.local import local_raylets

    with local_raylets(2, 1), ray_session("", num_cpus=1) as embedded:
        # A 2-node cluster is running on this machine; the embedded Ray is its own 1-CPU node.
        assert (embedded.mode, embedded.nodes, embedded.cpus) == ("embedded", 1, 1)


def test_parallel_equals_sequential_and_runs_longest_first(small_grid) -> None:
    dataset = load_dataset("diabetes")
    specs = load_grid(str(small_grid))
    seq_wall, seq = run_sequential(specs, dataset)
    with ray_session("", num_cpus=2) as cluster:
        assert cluster.cpus == 2 and cluster.nodes == 1 and cluster.mode == "embedded"
        runner = RayGridRunner(dataset, cpus_per_trial=1, cluster_cpus=cluster.cpus)
        assert runner.slots == 2
        assert runner.warm_up() > 0
        par_wall, par = runner.run(specs)
        with pytest.raises(RayscaleError, match="more than the cluster's 2 CPUs"):
            RayGridRunner(dataset, cpus_per_trial=3, cluster_cpus=cluster.cpus)
    assert seq_wall > 0 and par_wall > 0
    assert mismatches(seq, par) == []
    assert [t.index for t in par] == [0, 1, 2, 3]
    # Each trial ran in a Ray worker, not the driver, and says where.
    assert all(t.node_id and t.pid != seq[0].pid for t in par)
    assert all(t.queue_s >= 0 and t.end_ts >= t.start_ts for t in par)
    # Longest-expected-first: the costliest config was started no later than the cheapest.
    by_cost = sorted(par, key=lambda t: t.cost)
    assert by_cost[-1].start_ts <= by_cost[0].start_ts


# -- tiny trials: several to a Ray task -------------------------------------------------------------

CRASHER = '''
import os
from pathlib import Path

from sklearn.ensemble import GradientBoostingRegressor


class CrashOnce(GradientBoostingRegressor):
    """Kills its worker process the first time a 2-tree config fits while the marker exists."""

    def fit(self, X, y):
        marker = Path(os.environ["RAYSCALE_TEST_CRASH_MARKER"])
        if self.n_estimators == 2 and marker.exists():
            marker.unlink()
            os._exit(1)
        return super().fit(X, y)
'''


def test_tiny_trials_go_several_to_a_task_and_a_lost_batch_runs_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "crashonce.py").write_text(CRASHER)
    marker = tmp_path / "crash"
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("RAYSCALE_TEST_CRASH_MARKER", str(marker))
    dataset = load_dataset("diabetes")
    specs = [
        TrialSpec(i, {"n_estimators": 1 + i % 3, "max_depth": 1, "random_state": i}, "crashonce.CrashOnce")
        for i in range(120)
    ]
    _, seq = run_sequential(specs, dataset)
    with ray_session("", num_cpus=2) as cluster:
        runner = RayGridRunner(dataset, 1, cluster.cpus, estimator="crashonce.CrashOnce")
        runner.warm_up()
        _, first = runner.run(specs)  # the first fits are timed one to a task, then the rest batched
        assert runner.seconds_per_cost is not None and runner.tasks < len(specs)
        marker.touch()
        _, second = runner.run(specs)
        tasks = runner.tasks
    assert not marker.exists()  # a batch really lost its worker
    for par in (first, second):
        assert sorted(t.index for t in par) == list(range(120))  # every config exactly once
        assert mismatches(seq, par) == []  # identical metrics
    assert tasks < len(specs) / 3  # tiny fits went about ten to a task
    retried = [t for t in second if t.retries]
    # The whole lost batch ran again: the 2-tree config that crashed and its batch-mates, once each.
    assert len(retried) > 1 and {t.retries for t in retried} == {1}
    assert any(t.params["n_estimators"] == 2 for t in retried)


def test_long_fits_stay_one_to_a_task(small_grid: Path) -> None:
    dataset = load_dataset("friedman1:3000")
    specs = load_grid(str(small_grid))
    with ray_session("", num_cpus=2) as cluster:
        runner = RayGridRunner(dataset, 1, cluster.cpus)
        runner.warm_up()
        for _ in range(2):
            runner.run(specs)
            assert runner.tasks == len(specs)


# -- any scikit-learn estimator, regression and classification, --cv (on real Ray) ------------------

FAMILIES = [
    ("regression", "sklearn.ensemble.RandomForestRegressor", {"n_estimators": [5, 10], "max_depth": [3]}),
    ("regression", "sklearn.ensemble.HistGradientBoostingRegressor", {"max_iter": [10, 20]}),
    ("regression", "xgboost.XGBRegressor", {"n_estimators": [5, 10], "max_depth": [2]}),
    (
        "classification",
        "sklearn.ensemble.RandomForestClassifier",
        {"n_estimators": [5, 10], "max_depth": [3]},
    ),
    ("classification", "sklearn.ensemble.HistGradientBoostingClassifier", {"max_iter": [10, 20]}),
    ("classification", "sklearn.linear_model.LogisticRegression", {"C": [0.1, 1.0], "max_iter": [2000]}),
    ("classification", "xgboost.XGBClassifier", {"n_estimators": [5, 10], "max_depth": [2]}),
]
DATA = {"regression": "sklearn:diabetes", "classification": "sklearn:wine"}


def _grid(tmp_path: Path, estimator: str, product: dict[str, list[Any]]) -> list[TrialSpec]:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"estimator": estimator, "product": product}))
    return load_grid(str(path), seed=7)


def _plain(task: str, model: Any, X: Any, y: Any, n_classes: int) -> dict[str, float]:
    """The task's metrics computed here with scikit-learn directly."""
    from sklearn import metrics as m

    predicted = model.predict(X)
    if task == "regression":
        return {
            "rmse": float(np.sqrt(m.mean_squared_error(y, predicted))),
            "r2": m.r2_score(y, predicted),
            "mae": m.mean_absolute_error(y, predicted),
        }
    proba = model.predict_proba(X)
    out = {
        "accuracy": m.accuracy_score(y, predicted),
        "balanced_accuracy": m.balanced_accuracy_score(y, predicted),
        "f1_macro": m.f1_score(y, predicted, average="macro"),
        "log_loss": m.log_loss(y, proba, labels=list(range(n_classes))),
    }
    if n_classes == 2:
        out["roc_auc"] = m.roc_auc_score(y, proba[:, 1])
    return out


@pytest.fixture(scope="module")
def ray2() -> Any:
    with ray_session("", num_cpus=2) as cluster:
        yield cluster


@pytest.mark.parametrize(
    ("task", "estimator", "product"), FAMILIES, ids=[f[1].rpartition(".")[2] for f in FAMILIES]
)
def test_every_family_scores_as_plain_scikit_learn(
    tmp_path: Path, ray2: Any, task: str, estimator: str, product: dict[str, list[Any]]
) -> None:
    dataset = load_dataset(DATA[task], seed=7)
    assert dataset.task == task
    specs = _grid(tmp_path, estimator, product)
    _, seq = run_sequential(specs, dataset)
    _, par = RayGridRunner(dataset, 1, ray2.cpus, estimator=estimator).run(specs)
    assert mismatches(seq, par) == []  # parallel equals sequential, every metric
    for spec, record in zip(specs, par, strict=True):
        model = estimator_class(estimator)(**spec.params).fit(dataset.X_train, dataset.y_train)
        expected = _plain(task, model, dataset.X_test, dataset.y_test, dataset.n_classes)
        assert record.metrics.keys() == expected.keys()
        for name, value in expected.items():
            assert record.metrics[name] == pytest.approx(value, rel=1e-9, abs=1e-12), (estimator, name)
    metric = DEFAULT_METRIC[task]
    best = best_of(par, metric)
    values = {r.index: r.metrics[metric] for r in par}
    top = (min if direction(metric) == "min" else max)(values.values())
    assert best.index == min(i for i, v in values.items() if v == top)  # ties go to the earlier config


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_cv_scores_equal_cross_val_score_and_the_refit_is_scored_once(
    tmp_path: Path, ray2: Any, task: str
) -> None:
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score

    estimator = (
        "sklearn.ensemble.RandomForestRegressor"
        if task == "regression"
        else "sklearn.ensemble.RandomForestClassifier"
    )
    dataset = split_folds(load_dataset(DATA[task], seed=7), 3, seed=7)
    specs = per_fold(_grid(tmp_path, estimator, {"n_estimators": [5, 15], "max_depth": [3]}), 3)
    assert len(specs) == 6 and {s.fold for s in specs} == {0, 1, 2}
    _, seq = run_sequential(specs, dataset)
    _, par = RayGridRunner(dataset, 1, ray2.cpus, estimator=estimator).run(specs)
    assert mismatches(seq, par) == []
    splitter = (StratifiedKFold if task == "classification" else KFold)(3, shuffle=True, random_state=7)
    metric = DEFAULT_METRIC[task]
    scoring = "neg_root_mean_squared_error" if task == "regression" else "accuracy"
    sign = -1.0 if task == "regression" else 1.0
    means = cv_means(par)
    for spec in specs[::3]:
        model = estimator_class(estimator)(**spec.params)
        folds = cross_val_score(model, dataset.X_train, dataset.y_train, cv=splitter, scoring=scoring)
        mine = [t.metrics[metric] for t in sorted(par, key=lambda t: t.fold or 0) if t.index == spec.index]
        assert mine == pytest.approx(list(sign * folds), rel=1e-9)
        assert means[spec.index][metric] == pytest.approx(sign * folds.mean(), rel=1e-9)
    chosen = best_of(par, metric)
    assert chosen.cv_metrics[metric] == (min if task == "regression" else max)(
        m[metric] for m in means.values()
    )
    refitted = refit(chosen, estimator, dataset)
    model = estimator_class(estimator)(**chosen.params).fit(dataset.X_train, dataset.y_train)
    expected = _plain(task, model, dataset.X_test, dataset.y_test, dataset.n_classes)
    assert refitted.metrics == pytest.approx(expected, rel=1e-9)


# -- the longest-first order of an estimator without a cost formula -------------------------------


def test_the_order_comes_from_the_formula_the_sequential_round_or_a_pilot(tmp_path: Path, ray2: Any) -> None:
    from rayscale.work.grid.configs import cost_formula_applies, shape
    from rayscale.work.grid.runners import expected_costs

    dataset = load_dataset("sklearn:breast_cancer", seed=7)
    forest = _grid(tmp_path, "sklearn.ensemble.RandomForestClassifier", {"n_estimators": [5, 10]})
    assert cost_formula_applies(forest[0].estimator)
    assert expected_costs(forest, dataset, None) == ("formula", None, 0.0)
    # Logistic regression: no formula; C is a real number (one shape), the solver is not (two)
    product = {"C": [0.1, 1.0], "solver": ["lbfgs", "liblinear"], "max_iter": [5000]}
    linear = _grid(tmp_path, "sklearn.linear_model.LogisticRegression", product)
    assert not cost_formula_applies(linear[0].estimator)
    assert len({shape(s) for s in linear}) == 2
    source, costs, pilot_s = expected_costs(linear, dataset, None)
    assert source == "pilot" and costs is not None and pilot_s > 0
    for a in linear:  # configs of one shape share the one pilot fit's seconds
        for b in linear:
            assert (costs[(a.index, None)] == costs[(b.index, None)]) == (shape(a) == shape(b))
    _, sequential = run_sequential(linear, dataset)
    source, costs, pilot_s = expected_costs(linear, dataset, sequential)
    assert (source, pilot_s) == ("sequential", 0.0)
    assert costs == {(t.index, None): t.fit_s for t in sequential}
    runner = RayGridRunner(dataset, 1, ray2.cpus, estimator=linear[0].estimator)
    _, records = runner.run(linear, costs=costs)
    assert [r.cost for r in records] == [costs[(r.index, None)] for r in records]
