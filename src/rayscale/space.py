"""The Tune phase's search space, an option like any other: the built-in default, a YAML file,
and the checks that refuse a bad space before any cluster work."""

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
YAML_EXPONENT = re.compile(r"^[+-]?\d+[eE][+-]?\d+$")
TEXT_PARAMS = {"grow_policy", "tree_method"}  # every other parameter takes numbers


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


def count_trials(space: dict[str, Any], samples: int | None) -> int:
    """How many trials a space yields: ``samples`` when sampling, else the grid's size."""
    if samples is not None:
        return samples
    return math.prod(len(v) for v in space.values() if isinstance(v, list))
