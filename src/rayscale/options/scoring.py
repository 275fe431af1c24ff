"""What kind of learning problem a dataset poses, and how a fitted model is scored on it.

A regression task is scored by RMSE, R² and MAE; a classification task by accuracy, balanced
accuracy, macro F1, log loss (when the model gives probabilities) and ROC AUC (binary). Each metric
knows its direction, so "best" means the lowest RMSE or the highest accuracy alike.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from rayscale.errors import RayscaleError

Task = Literal["regression", "classification"]
TASKS = ("auto", "regression", "classification")
# metric -> "min" or "max"
METRICS: dict[Task, dict[str, str]] = {
    "regression": {"rmse": "min", "r2": "max", "mae": "min"},
    "classification": {
        "accuracy": "max",
        "balanced_accuracy": "max",
        "f1_macro": "max",
        "log_loss": "min",
        "roc_auc": "max",
    },
}
DEFAULT_METRIC: dict[Task, str] = {"regression": "rmse", "classification": "accuracy"}
PROBABILITY_METRICS = ("log_loss", "roc_auc")  # scored from class probabilities (predict_proba)
MAX_CLASSES_AUTO = 20  # an integer target with at most this many values is taken for classes


def direction(metric: str) -> str:
    for table in METRICS.values():
        if metric in table:
            return table[metric]
    raise RayscaleError(f"unknown metric {metric!r}; choose from {', '.join(all_metrics())}")


def all_metrics() -> list[str]:
    return [name for table in METRICS.values() for name in table]


def check_metric(metric: str | None, task: Task) -> str:
    """The selection metric for ``task``: ``metric`` when it fits, else a one-line error."""
    if metric is None:
        return DEFAULT_METRIC[task]
    if metric not in METRICS[task]:
        raise RayscaleError(
            f"--metric {metric} does not fit a {task} task; choose from {', '.join(METRICS[task])}"
        )
    return metric


def better(metric: str, a: float, b: float) -> bool:
    """Whether score ``a`` is better than ``b`` on ``metric``."""
    return a < b if direction(metric) == "min" else a > b


def ranking_key(metric: str, value: float) -> float:
    """A key that sorts the best value first, whatever the metric's direction."""
    return value if direction(metric) == "min" else -value


def detect(y: Any, requested: str) -> tuple[Task, str]:
    """(task, why) for the target column ``y`` and ``--task`` (auto, regression or classification)."""
    import pandas as pd

    series = pd.Series(y)
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    if requested == "regression":
        if not numeric:
            bad = series[~series.map(_parses_as_number)].iloc[0]
            raise RayscaleError(f"the target must be numeric for --task regression; found {bad!r}")
        return "regression", "--task regression"
    if requested == "classification":
        return "classification", "--task classification"
    if not numeric:
        return "classification", "auto: the target is not numeric"
    values = series.to_numpy(dtype=float)
    distinct = len(np.unique(values))
    if np.all(np.mod(values, 1) == 0) and distinct <= MAX_CLASSES_AUTO:
        return "classification", f"auto: an integer target with {distinct} distinct values"
    return "regression", "auto: a numeric target"


def _parses_as_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def score(task: Task, model: Any, X: np.ndarray, y: np.ndarray, n_classes: int) -> dict[str, float]:
    """Every metric of ``task`` for ``model`` on (X, y); classes are encoded 0..n_classes-1."""
    predicted = model.predict(X)
    if task == "regression":
        return regression_scores(y, predicted)
    proba = model.predict_proba(X) if hasattr(model, "predict_proba") else None
    return classification_scores(y, predicted, proba, n_classes)


def classification_scores(
    y: np.ndarray, predicted: np.ndarray, proba: np.ndarray | None, n_classes: int
) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro F1 of the predicted classes; log loss and (binary)
    ROC AUC of the class probabilities when there are any (one column per class)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, log_loss, roc_auc_score

    out = {
        "accuracy": float(accuracy_score(y, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(y, predicted)),
        "f1_macro": float(f1_score(y, predicted, average="macro")),
    }
    if proba is not None:
        out["log_loss"] = float(log_loss(y, proba, labels=list(range(n_classes))))
        if n_classes == 2:
            out["roc_auc"] = float(roc_auc_score(y, proba[:, 1]))
    return out


def regression_scores(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE, R² and MAE: the same metrics for the grid and for Tune.

    Computed as scikit-learn's ``mean_squared_error``, ``r2_score`` and ``mean_absolute_error``
    define them (equal to theirs to rounding; a constant target's R² is 0 as a perfect fit is 1,
    as theirs), without their input checks: on a tiny trial those took longer than the fit."""
    y = np.asarray(y_true, dtype=float).ravel()
    residual = y - np.asarray(predicted, dtype=float).ravel()
    unexplained = float(np.sum(residual**2))
    total = float(np.sum((y - np.mean(y)) ** 2))
    constant = 1.0 if unexplained == 0.0 else 0.0  # a constant target: scikit-learn's finite R²
    return {
        "rmse": float(np.sqrt(float(np.mean(residual**2)))),
        "r2": 1.0 - unexplained / total if total != 0.0 else constant,
        "mae": float(np.mean(np.abs(residual))),
    }
