"""The Tune models (xgboost, lightgbm, sklearn:CLASS): each sweeps on a real embedded Ray, follows
the task, and its best retrains, with the library's own plain calls, to the score it reported."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rayscale.errors import RayscaleError
from rayscale.options.commands import TuneOptions
from rayscale.options.scoring import direction, ranking_key, regression_scores, score
from rayscale.options.space import check_tune_model, default_space, load_space
from rayscale.results.schema import ClusterInfo, TuneResult
from rayscale.work.cluster.session import ray_session
from rayscale.work.data import Dataset, load_dataset
from rayscale.work.tune.families import Sklearn, family_for
from rayscale.work.tune.sweep import run_sweep

SEED = 42
FOREST = "sklearn.ensemble.RandomForestRegressor"


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[ClusterInfo]:
    with ray_session("", num_cpus=2) as cluster:
        yield cluster


def _data(spec: str) -> Dataset:
    return load_dataset(spec, seed=SEED)


def _metric(dataset: Dataset, y_pred: np.ndarray, proba: np.ndarray | None = None) -> float:
    """The selection metric the sweep used (RMSE, or accuracy), computed here by hand."""
    if dataset.task == "regression":
        return regression_scores(dataset.y_test, y_pred)["rmse"]
    return float(np.mean(y_pred == dataset.y_test))


# Each case: (model, dataset, space, plain retrain of (params, rounds) -> the selection metric)
def _xgb_binary(d: Dataset, params: dict[str, Any], rounds: int) -> float:
    import xgboost as xgb

    full = {"objective": "binary:logistic", "tree_method": "hist", "nthread": 1, "seed": SEED, **params}
    booster = xgb.train(full, xgb.DMatrix(d.X_train, label=d.y_train), num_boost_round=rounds)
    return _metric(d, (booster.predict(xgb.DMatrix(d.X_test)) > 0.5).astype(int))


def _xgb_multi(d: Dataset, params: dict[str, Any], rounds: int) -> float:
    import xgboost as xgb

    full = {"objective": "multi:softprob", "num_class": 3, "tree_method": "hist", "nthread": 1, "seed": SEED}
    booster = xgb.train({**full, **params}, xgb.DMatrix(d.X_train, label=d.y_train), num_boost_round=rounds)
    return _metric(d, np.argmax(booster.predict(xgb.DMatrix(d.X_test)), axis=1))


def _lgb_regression(d: Dataset, params: dict[str, Any], rounds: int) -> float:
    import lightgbm as lgb

    full = {"objective": "regression", "num_threads": 1, "seed": SEED, "deterministic": True}
    full |= {"force_col_wise": True, "verbose": -1, **params}
    booster = lgb.train(full, lgb.Dataset(d.X_train, label=d.y_train), num_boost_round=rounds)
    return _metric(d, booster.predict(d.X_test))


def _lgb_binary(d: Dataset, params: dict[str, Any], rounds: int) -> float:
    import lightgbm as lgb

    full = {"objective": "binary", "num_threads": 1, "seed": SEED, "deterministic": True}
    full |= {"force_col_wise": True, "verbose": -1, **params}
    booster = lgb.train(full, lgb.Dataset(d.X_train, label=d.y_train), num_boost_round=rounds)
    return _metric(d, (booster.predict(d.X_test) > 0.5).astype(int))


def _forest(d: Dataset, params: dict[str, Any], rounds: int) -> float:
    from sklearn.ensemble import RandomForestRegressor

    model = RandomForestRegressor(n_estimators=rounds, random_state=SEED, n_jobs=1, **params)
    return _metric(d, model.fit(d.X_train, d.y_train).predict(d.X_test))


def _hist_classifier(d: Dataset, params: dict[str, Any], rounds: int) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(max_iter=rounds, early_stopping=False, random_state=SEED, **params)
    return _metric(d, model.fit(d.X_train, d.y_train).predict(d.X_test))


def _sgd(d: Dataset, params: dict[str, Any], rounds: int) -> float:
    from sklearn.linear_model import SGDRegressor

    model = SGDRegressor(random_state=SEED, early_stopping=False, **params)
    for _ in range(rounds):
        model.partial_fit(d.X_train, d.y_train)
    return _metric(d, model.predict(d.X_test))


Retrain = Callable[[Dataset, dict[str, Any], int], float]
CASES: list[tuple[str, str, dict[str, Any], Retrain]] = [
    ("xgboost", "sklearn:breast_cancer", {"learning_rate": [0.1, 0.3], "max_depth": [2, 3]}, _xgb_binary),
    ("xgboost", "sklearn:iris", {"learning_rate": [0.1, 0.3], "max_depth": [2, 3]}, _xgb_multi),
    ("lightgbm", "diabetes", {"learning_rate": [0.05, 0.1], "num_leaves": [7, 15]}, _lgb_regression),
    ("lightgbm", "sklearn:breast_cancer", {"learning_rate": [0.05, 0.1], "num_leaves": [7, 15]}, _lgb_binary),
    (
        "sklearn:sklearn.ensemble.RandomForestRegressor",
        "diabetes",
        {"max_features": [0.5, 1.0], "min_samples_leaf": [1, 5]},
        _forest,
    ),
    (
        "sklearn:sklearn.ensemble.HistGradientBoostingClassifier",
        "sklearn:breast_cancer",
        {"learning_rate": [0.05, 0.2], "max_leaf_nodes": [7, 15]},
        _hist_classifier,
    ),
    (
        "sklearn:sklearn.linear_model.SGDRegressor",
        "diabetes",
        {"alpha": [1e-4, 1e-2], "eta0": [0.01, 0.05]},
        _sgd,
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("model", "spec", "space", "retrain"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_each_tune_model_follows_the_task_and_its_best_retrains(
    ray_cluster, tmp_path: Path, model: str, spec: str, space: dict, retrain: Retrain
) -> None:
    dataset = _data(spec)
    metric = "rmse" if dataset.task == "regression" else "accuracy"
    opts = TuneOptions(
        model=model, space=space, max_rounds=40, grace_period=10, report_every=10, seed=SEED,
        metric=metric, mode=direction(metric),  # type: ignore[arg-type]
    )  # fmt: skip
    result = run_sweep(dataset, opts, ray_cluster.cpus, tmp_path)
    assert isinstance(result, TuneResult)
    assert result.model == model and result.task == dataset.task and result.metric == metric
    assert sorted(t.index for t in result.trials) == list(range(4))
    assert all(t.rounds % 10 == 0 and 10 <= t.rounds <= 40 for t in result.trials)
    assert all(r.metrics.keys() == result.trials[0].metrics.keys() for t in result.trials for r in t.reports)
    if dataset.task == "classification":
        assert {"accuracy", "balanced_accuracy", "f1_macro", "log_loss"} <= result.best.metrics.keys()
        assert ("roc_auc" in result.best.metrics) == (len(dataset.classes) == 2)
        assert result.best.rmse is None
    else:
        assert result.best.rmse == result.best.metrics["rmse"]
    # the best is the best trial by the metric's direction, and the baseline is scored alike
    best = min(result.trials, key=lambda t: (ranking_key(metric, t.metrics[metric]), t.index))
    assert result.best.params == best.params and result.best.rounds == best.rounds
    assert result.best.metrics == best.metrics
    assert result.baseline.metrics.keys() == best.metrics.keys()
    # the best retrains, with the library's plain calls, to the score it reported
    assert best.rounds is not None
    assert retrain(dataset, best.params, best.rounds) == pytest.approx(best.metrics[metric], rel=1e-9)


@pytest.mark.slow
def test_the_baseline_is_the_library_default(tmp_path: Path) -> None:
    """The baseline is the library's own default model, scored as a user would score it."""
    import lightgbm as lgb

    dataset = _data("sklearn:breast_cancer")
    family = family_for("lightgbm", dataset.task, len(dataset.classes))
    params, model = family.baseline(
        (dataset.X_train, dataset.y_train, dataset.X_test, dataset.y_test, None, None), 1, SEED
    )
    assert params["n_estimators"] == 100 and params["learning_rate"] == 0.1 and params["num_leaves"] == 31
    plain = lgb.LGBMClassifier(n_jobs=1, random_state=SEED, verbose=-1).fit(dataset.X_train, dataset.y_train)
    assert family.scores(model, dataset.X_test, dataset.y_test) == pytest.approx(
        score("classification", plain, dataset.X_test, dataset.y_test, 2), rel=1e-12
    )


@pytest.mark.parametrize(
    ("path", "unit", "growth"),
    [
        ("sklearn.ensemble.RandomForestClassifier", "estimators", "n_estimators"),
        ("sklearn.ensemble.GradientBoostingRegressor", "estimators", "n_estimators"),
        ("sklearn.ensemble.HistGradientBoostingRegressor", "iterations", "max_iter"),
        ("sklearn.linear_model.SGDClassifier", "epochs", None),
        ("sklearn.neural_network.MLPRegressor", "epochs", None),
    ],
)
def test_how_a_scikit_learn_estimator_grows(path: str, unit: str, growth: str | None) -> None:
    family = Sklearn(f"sklearn:{path}", "regression", 0)
    assert (family.unit, family.growth) == (unit, growth)
    assert default_space(f"sklearn:{path}")  # every one of them has a built-in space


@pytest.mark.parametrize(
    ("model", "space", "metric", "message"),
    [
        ("sklearn:sklearn.svm.SVR", {"C": [1.0]}, "rmse", "neither grows by warm_start"),
        (
            "sklearn:sklearn.ensemble.RandomForestRegressor",
            {"max_dept": [2]},
            "rmse",
            "no parameter 'max_dept'",
        ),
        (
            "sklearn:sklearn.ensemble.RandomForestRegressor",
            {"n_estimators": [5]},
            "rmse",
            "what the sweep grows",
        ),
        (
            "sklearn:sklearn.linear_model.SGDClassifier",
            {"alpha": [1e-4]},
            "log_loss",
            "needs class probabilities",
        ),
        ("sklearn:sklearn.nope.Model", {"a": [1]}, "rmse", "does not import"),
    ],
)
def test_a_tune_model_that_cannot_take_the_space_or_metric_is_refused(
    model: str, space: dict, metric: str, message: str
) -> None:
    with pytest.raises(RayscaleError, match=message):
        family_for(model, "classification", 2).check(space, metric)


def test_tune_model_names_and_default_spaces() -> None:
    assert check_tune_model("lightgbm") == "lightgbm"
    with pytest.raises(RayscaleError, match="choose xgboost, lightgbm or sklearn:CLASS"):
        check_tune_model("catboost")
    assert load_space(None, "lightgbm") == default_space("lightgbm") and len(default_space("lightgbm")) == 5
    with pytest.raises(RayscaleError, match="no built-in search space for SVR; give --space FILE"):
        load_space(None, "sklearn:sklearn.svm.SVR")
    with pytest.raises(RayscaleError, match="unknown LightGBM parameter 'max_depthh'"):
        TuneOptions(model="lightgbm", space={"max_depthh": [2]}).validate()
