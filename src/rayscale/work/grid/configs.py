"""Hyperparameter grids: configs of any scikit-learn estimator (GradientBoostingRegressor by default).

A grid is the built-in ``seed`` grid (the 20 configs of the first seed experiment) or a YAML
file holding either an explicit list of configs::

    configs:
      - {n_estimators: 100, learning_rate: 0.1, max_depth: 3}
      - {n_estimators: 200, learning_rate: 0.05, max_depth: 2}

or a cartesian product of value lists (scalars are held fixed)::

    product:
      n_estimators: [100, 200, 400]
      learning_rate: [0.05, 0.1]
      max_depth: 3

Both may be given; the product's configs follow the explicit ones. ``estimator:`` names any
importable class with the scikit-learn estimator API (``sklearn.ensemble.RandomForestClassifier``,
``xgboost.XGBRegressor``, …); the default is the seed's GradientBoostingRegressor. Every config is
validated up front against the estimator's real parameters (``get_params()``), so a typo fails
before any cluster work; ``random_state`` follows ``--seed`` and the thread count
(``n_jobs``, ``nthread``, ``num_threads``) ``--cpus-per-trial`` where the estimator has them.
"""

from __future__ import annotations

import importlib
import itertools
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from rayscale.errors import RayscaleError
from rayscale.options.space import is_number

SEED_GRID_SIZE = 20
BUILTIN_GRIDS = ("seed",)
DEFAULT_ESTIMATOR = "sklearn.ensemble.GradientBoostingRegressor"
THREAD_PARAMS = ("n_jobs", "nthread", "num_threads")
UNLIMITED_DEPTH = 8  # what a tree of max_depth None is costed as


def estimator_class(path: str) -> type:
    """The class at dotted ``path``, checked to be a scikit-learn style estimator."""
    module_name, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), name) if module_name else None
    except (ImportError, AttributeError) as exc:
        raise RayscaleError(f"estimator {path!r} does not import: {str(exc).splitlines()[0]}") from None
    if found is None:
        raise RayscaleError(
            f"estimator {path!r} does not import: give a dotted path, e.g. {DEFAULT_ESTIMATOR}"
        )
    if not isinstance(found, type) or not all(hasattr(found, m) for m in ("fit", "predict", "get_params")):
        raise RayscaleError(
            f"{path!r} is not a scikit-learn estimator (a class with fit, predict and get_params)"
        )
    return found


def make_estimator(path: str, params: dict[str, Any]) -> Any:
    return estimator_class(path)(**params)


@dataclass(frozen=True)
class TrialSpec:
    """One config of a grid: its position, estimator, parameters and relative cost; with
    ``--cv`` one task per (config, fold), ``fold`` the held-out fold."""

    index: int
    params: dict[str, Any]
    estimator: str = DEFAULT_ESTIMATOR
    fold: int | None = None

    def cost(self, n_rows: int, n_features: int) -> float:
        """Relative fit cost: trees (or iterations) × tree depth × rows × features × subsample.

        Gradient boosting fits one regression tree per stage, a forest one tree per estimator;
        a depth-d tree scans every (sampled) row and feature once per level. An estimator without
        trees or iterations costs rows × features. The absolute scale is meaningless; the
        ordering drives longest-first scheduling and the ratio to measured time flags stragglers.
        """
        p = {**_defaults(self.estimator), **self.params}
        rounds = p.get("n_estimators") or p.get("max_iter") or 1
        depth = p.get("max_depth") or (UNLIMITED_DEPTH if "max_depth" in p else 1)
        return float(rounds * depth * n_rows * n_features * (p.get("subsample") or 1.0))


def cost_formula_applies(estimator: str) -> bool:
    """Whether :meth:`TrialSpec.cost` models the estimator's fit time: an ensemble of trees or
    boosting stages (``n_estimators``, or ``max_iter`` with a tree size). Elsewhere (a linear
    model's ``max_iter`` is a cap, not the work; an SVM's cost is in its data) it does not."""
    p = _defaults(estimator)
    return "n_estimators" in p or ("max_iter" in p and ("max_depth" in p or "max_leaf_nodes" in p))


def shape(spec: TrialSpec) -> tuple[tuple[str, str], ...]:
    """What a config's fit time is taken to depend on where no formula applies: its parameters
    that are not real numbers (a kernel, a solver, a count). Configs differing only in a real
    number (a regularisation strength) share a shape, and a pilot times one of them."""
    return tuple(sorted((k, repr(v)) for k, v in spec.params.items() if not isinstance(v, float)))


@cache
def _defaults(path: str) -> dict[str, Any]:
    """The estimator's parameters and their defaults (read-only: a cached dict)."""
    return dict(estimator_class(path)().get_params())


def seed_grid(seed: int = 42) -> list[TrialSpec]:
    """The first seed's 20 configs: more and deeper trees with a rising learning rate."""
    return [
        TrialSpec(
            i,
            {
                "n_estimators": 50 + 10 * i,
                "learning_rate": round(0.05 + 0.005 * i, 6),
                "max_depth": 2 + i // 5,
                "random_state": seed,
            },
        )
        for i in range(SEED_GRID_SIZE)
    ]


def validate_params(params: Any, where: str, estimator: str = DEFAULT_ESTIMATOR) -> dict[str, Any]:
    """Check one config; return it unchanged or raise a one-line :class:`RayscaleError`."""
    if not isinstance(params, dict) or not params:
        raise RayscaleError(f"{where}: a config must be a non-empty mapping of parameter: value")
    known = _defaults(estimator)
    short = estimator.rpartition(".")[2]
    for name in params:
        if name not in known:
            raise RayscaleError(
                f"{where}: unknown {short} parameter {name!r}; valid: {', '.join(sorted(known))}"
            )
    if "n_estimators" in params:
        n_est = params["n_estimators"]
        if not isinstance(n_est, int) or isinstance(n_est, bool):
            raise RayscaleError(f"{where}: n_estimators must be a whole number, got {n_est!r}")
        if n_est <= 0:
            raise RayscaleError(f"{where}: n_estimators must be positive, got {n_est}")
    if "learning_rate" in params:
        rate = params["learning_rate"]
        if not is_number(rate):
            raise RayscaleError(f"{where}: learning_rate must be a number, got {rate!r}")
        if rate <= 0:
            raise RayscaleError(f"{where}: learning_rate must be greater than 0, got {rate}")
    depth = params.get("max_depth")
    if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool) or depth < 1):
        raise RayscaleError(f"{where}: max_depth must be a positive whole number or null, got {depth!r}")
    subsample = params.get("subsample", 1.0)
    if not is_number(subsample) or not 0 < subsample <= 1:
        raise RayscaleError(f"{where}: subsample must be a number in (0, 1], got {subsample!r}")
    # Everything else is checked by scikit-learn's own parameter validation (where the estimator
    # has it), on a throwaway estimator, so that a wrong type fails here rather than in a task.
    try:
        probe = make_estimator(estimator, params)
        if hasattr(probe, "_parameter_constraints"):  # scikit-learn's own estimators
            probe._validate_params()
    except (ValueError, TypeError) as exc:
        message = str(exc).splitlines()[0]
        raise RayscaleError(f"{where}: {message}") from None
    return params


def _product(spec: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(spec, dict) or not spec:
        raise RayscaleError(f"{where}: 'product' must map parameter names to value lists")
    axes: list[list[Any]] = []
    for name, values in spec.items():
        if isinstance(values, list):
            if not values:
                raise RayscaleError(f"{where}: product axis {name!r} has no values")
            axes.append(values)
        else:
            axes.append([values])
    return [dict(zip(spec, combo, strict=True)) for combo in itertools.product(*axes)]


def parse_grid(document: Any, seed: int, source: str = "grid", threads: int = 1) -> list[TrialSpec]:
    """Turn a parsed YAML document into validated trial specs (``threads``: --cpus-per-trial)."""
    if not isinstance(document, dict):
        raise RayscaleError(f"{source}: expected a mapping with 'configs' and/or 'product'")
    unknown = set(document) - {"configs", "product", "estimator"}
    if unknown:
        raise RayscaleError(
            f"{source}: unknown key {sorted(unknown)[0]!r}; use 'estimator', 'configs' and/or 'product'"
        )
    estimator = document.get("estimator", DEFAULT_ESTIMATOR)
    if not isinstance(estimator, str):
        raise RayscaleError(f"{source}: 'estimator' must be a dotted class path, e.g. {DEFAULT_ESTIMATOR}")
    known = _defaults(estimator)
    configs: list[Any] = []
    if "configs" in document:
        explicit = document["configs"]
        if not isinstance(explicit, list):
            raise RayscaleError(f"{source}: 'configs' must be a list of mappings")
        configs.extend(explicit)
    if "product" in document:
        configs.extend(_product(document["product"], source))
    if not configs:
        raise RayscaleError(f"{source}: the grid is empty")
    specs = []
    for i, params in enumerate(configs):
        checked = dict(validate_params(params, f"{source}: config {i}", estimator))
        if "random_state" in known:
            checked.setdefault("random_state", seed)
        for name in THREAD_PARAMS:
            if name in known:
                checked.setdefault(name, threads)
        specs.append(TrialSpec(i, checked, estimator))
    return specs


def load_grid(
    spec: str = "seed", seed: int = 42, max_trials: int | None = None, threads: int = 1
) -> list[TrialSpec]:
    """The built-in grid ``seed`` or a YAML file path, validated; ``max_trials`` caps its size."""
    if spec == "seed":
        specs = seed_grid(seed)
    else:
        path = Path(spec)
        if not path.is_file():
            raise RayscaleError(f"grid file not found: {spec} (built-in grids: {', '.join(BUILTIN_GRIDS)})")
        try:
            document = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            raise RayscaleError(f"grid file {spec} is not valid YAML{at}") from None
        except UnicodeDecodeError:
            raise RayscaleError(f"grid file {spec} is not a text file") from None
        if document is None:
            raise RayscaleError(f"grid file {spec} is empty")
        specs = parse_grid(document, seed, source=str(spec), threads=threads)
    if max_trials is not None and len(specs) > max_trials:
        raise RayscaleError(f"grid {spec} has {len(specs)} configs, more than --max-trials {max_trials}")
    return specs


def per_fold(specs: list[TrialSpec], folds: int) -> list[TrialSpec]:
    """One task per (config, fold) for ``--cv``, as GridSearchCV parallelises."""
    return [replace(spec, fold=k) for spec in specs for k in range(folds)]
