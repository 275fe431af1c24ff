"""The Tune phase's search space, an option like any other: each Tune model's built-in default, a
YAML file, and the checks that refuse a bad space before any cluster work.

Tune models (``--tune-model``): ``xgboost`` (the default), ``lightgbm``, and ``sklearn:CLASS`` for a
scikit-learn estimator that grows by ``warm_start`` (``n_estimators`` or ``max_iter``) or learns by
``partial_fit`` (epochs). A scikit-learn class's parameters are checked against its
``get_params()`` by the Tune phase before Ray starts; XGBoost's and LightGBM's against the lists here.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from rayscale.errors import RayscaleError

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
LIGHTGBM_SPACE: dict[str, Any] = {
    "learning_rate": [0.03, 0.1],
    "num_leaves": [7, 31],
    "min_child_samples": [5, 20],
    "feature_fraction": [0.8, 1.0],
    "lambda_l2": [0.0, 1.0],
}
# lightgbm.train parameters a space may sweep (their main names and common aliases).
LIGHTGBM_PARAMS = {
    "learning_rate",
    "num_leaves",
    "max_depth",
    "min_child_samples",
    "min_data_in_leaf",
    "min_child_weight",
    "min_sum_hessian_in_leaf",
    "feature_fraction",
    "colsample_bytree",
    "bagging_fraction",
    "subsample",
    "bagging_freq",
    "lambda_l1",
    "reg_alpha",
    "lambda_l2",
    "reg_lambda",
    "min_gain_to_split",
    "max_bin",
    "boosting",
}
# scikit-learn estimators' default spaces, by class name (regressor and classifier alike).
SKLEARN_SPACES: dict[str, dict[str, Any]] = {
    "GradientBoosting": {"learning_rate": [0.05, 0.1, 0.2], "max_depth": [2, 3], "subsample": [0.8, 1.0]},
    "HistGradientBoosting": {
        "learning_rate": [0.05, 0.1, 0.2],
        "max_leaf_nodes": [15, 31],
        "l2_regularization": [0.0, 1.0],
    },
    "RandomForest": {"max_features": [0.5, 1.0], "min_samples_leaf": [1, 5], "max_depth": [6, None]},
    "ExtraTrees": {"max_features": [0.5, 1.0], "min_samples_leaf": [1, 5], "max_depth": [6, None]},
    "SGD": {"alpha": [1e-5, 1e-4, 1e-3], "penalty": ["l2", "l1", "elasticnet"]},
    "MLP": {"alpha": [1e-4, 1e-2], "learning_rate_init": [1e-3, 1e-2]},
}
YAML_EXPONENT = re.compile(r"^[+-]?\d+[eE][+-]?\d+$")
TEXT_PARAMS = {"grow_policy", "tree_method", "boosting"}  # every other parameter takes numbers


def check_tune_model(model: str) -> str:
    """``model`` when it names a Tune model, else a one-line error."""
    if model in ("xgboost", "lightgbm") or (model.startswith("sklearn:") and len(model) > len("sklearn:")):
        return model
    raise RayscaleError(f"--tune-model {model!r}: choose xgboost, lightgbm or sklearn:CLASS")


def default_space(model: str = "xgboost") -> dict[str, Any]:
    """The built-in space of a Tune model (a scikit-learn class's by its name)."""
    if model == "xgboost":
        return dict(DEFAULT_SPACE)
    if model == "lightgbm":
        return dict(LIGHTGBM_SPACE)
    name = model.rpartition(".")[2]
    for stem, space in SKLEARN_SPACES.items():
        if name.startswith(stem):
            return dict(space)
    raise RayscaleError(f"--tune-model {model}: no built-in search space for {name}; give --space FILE")


def load_space(path: str | None, model: str = "xgboost") -> dict[str, Any]:
    """The search space from YAML (``space:`` mapping) or the Tune model's built-in default."""
    if path is None:
        return default_space(check_tune_model(model))
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


def is_number(value: Any) -> bool:
    """A real number as YAML or JSON gives one (a bool is not)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_values(name: str, values: list[Any], model: str = "xgboost") -> None:
    """A numeric parameter takes numbers only; a text one takes text only (no mixing). A
    scikit-learn estimator's values are checked by the estimator itself (``None`` and text too)."""
    if model.startswith("sklearn:"):
        wrong = [v for v in values if isinstance(v, list | dict)]
        kind = "single values"
    elif name in TEXT_PARAMS:
        wrong = [v for v in values if not isinstance(v, str)]
        kind = "text"
    else:
        wrong = [v for v in values if not is_number(v)]
        kind = "numbers"
    if wrong:
        raise RayscaleError(f"search space: {name!r} takes {kind}; got {wrong[0]!r}")


def validate_space(space: dict[str, Any], samples: int | None, model: str = "xgboost") -> None:
    known = {"xgboost": XGB_PARAMS, "lightgbm": LIGHTGBM_PARAMS}.get(model)
    for name, value in space.items():
        if known is not None and name not in known:
            label = "XGBoost" if model == "xgboost" else "LightGBM"
            raise RayscaleError(f"search space: unknown {label} parameter {name!r}")
        if isinstance(value, list):
            if not value:
                raise RayscaleError(f"search space: {name!r} has no values")
            _check_values(name, value, model)
        elif isinstance(value, dict):
            if len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
                raise RayscaleError(
                    f"search space: {name!r} must be a list or one of {', '.join(DISTRIBUTIONS)}"
                )
            kind, bounds = next(iter(value.items()))
            if not isinstance(bounds, list) or not bounds:
                raise RayscaleError(f"search space: {name!r} {kind} needs a list of values")
            _check_values(name, bounds, model)
            if kind != "choice" and (len(bounds) != 2 or bounds[0] >= bounds[1]):
                raise RayscaleError(f"search space: {name!r} {kind} needs [low, high] with low < high")
            if samples is None:
                raise RayscaleError(
                    f"search space: {name!r} is a distribution; random sampling needs --samples N"
                )
        elif value is None or isinstance(value, int | float | str):
            _check_values(name, [value], model)
        else:
            raise RayscaleError(f"search space: {name!r} must be a value, a list or a distribution")


def count_trials(space: dict[str, Any], samples: int | None) -> int:
    """How many trials a space yields: ``samples`` when sampling, else the grid's size."""
    if samples is not None:
        return samples
    return math.prod(len(v) for v in space.values() if isinstance(v, list))
