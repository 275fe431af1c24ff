"""Datasets by name: ``diabetes``, ``friedman1:ROWS[:FEATURES]``, ``csv:PATH:TARGET``,
``parquet:PATH:TARGET`` and ``sklearn:NAME`` (scikit-learn's bundled sets).

Every loader returns the full table; :func:`load_dataset` decides the task (regression or
classification, :mod:`rayscale.options.scoring`), encodes class labels as 0..K-1 (the labels themselves are
kept), and applies the hold-out split (stratified for classes) so the grid, the Tune sweep and
the benchmarks all see the same train/test rows for a given seed.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from rayscale.errors import RayscaleError
from rayscale.options.scoring import Task, detect

# X_train, y_train, X_test, y_test, X_val, y_val (the validation pair is None without one)
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]


@dataclass(frozen=True)
class Dataset:
    """A regression table already split into train and test parts, and optionally a validation
    part carved from the training rows (what selection is made on; the test part stays untouched)."""

    spec: str
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    feature_names: tuple[str, ...]
    X_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    warnings: tuple[str, ...] = ()
    task: Task = "regression"
    task_reason: str = ""
    classes: tuple[str, ...] = ()  # classification: the label of each encoded class 0..K-1
    folds: tuple[tuple[np.ndarray, np.ndarray], ...] = ()  # --cv: (fit rows, held-out rows) of X_train

    @property
    def n_train(self) -> int:
        return int(self.X_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.X_test.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def n_val(self) -> int:
        return 0 if self.X_val is None else int(self.X_val.shape[0])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> dict[str, object]:
        described: dict[str, object] = {
            "spec": self.spec,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "n_test": self.n_test,
            "n_features": self.n_features,
            "task": self.task,
            "task_reason": self.task_reason,
        }
        if self.classes:
            described["classes"] = list(self.classes)
        if self.folds:
            described["cv_folds"] = len(self.folds)
        return described


def arrays(dataset: Dataset) -> Arrays:
    return dataset.X_train, dataset.y_train, dataset.X_test, dataset.y_test, dataset.X_val, dataset.y_val


@dataclass(frozen=True)
class Work:
    """What every grid task needs besides its config, put in the object store once."""

    arrays: Arrays
    task: Task
    n_classes: int
    folds: tuple[tuple[np.ndarray, np.ndarray], ...]  # --cv: (train rows, held-out rows) per fold

    @classmethod
    def of(cls, dataset: Dataset) -> Work:
        return cls(arrays(dataset), dataset.task, dataset.n_classes, dataset.folds)


def split_folds(dataset: Dataset, k: int, seed: int) -> Dataset:
    """The training split cut into ``k`` folds (``--cv``): ``KFold(k, shuffle=True,
    random_state=seed)``, ``StratifiedKFold`` for classes, as GridSearchCV does."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if k > dataset.n_train:
        raise RayscaleError(f"--cv {k} is more folds than the {dataset.n_train} training rows")
    if dataset.classes:
        smallest = int(np.bincount(dataset.y_train).min())
        if k > smallest:
            raise RayscaleError(
                f"--cv {k} is more folds than the smallest class has training rows ({smallest})"
            )
        splitter: Any = StratifiedKFold(k, shuffle=True, random_state=seed)
    else:
        splitter = KFold(k, shuffle=True, random_state=seed)
    folds = tuple((fit, held) for fit, held in splitter.split(dataset.X_train, dataset.y_train))
    return replace(dataset, folds=folds)


Table = tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...]]  # X, y, names, warnings


def _diabetes(args: list[str], seed: int) -> Table:
    if args:
        raise RayscaleError("dataset 'diabetes' takes no arguments")
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    return data.data, data.target, tuple(data.feature_names), ()


def _positive_int(text: str, what: str, minimum: int = 1) -> int:
    try:
        value = int(text)
    except ValueError:
        raise RayscaleError(f"{what} must be a whole number, got {text!r}") from None
    if value < minimum:
        raise RayscaleError(f"{what} must be at least {minimum}, got {value}")
    return value


def _friedman1(args: list[str], seed: int) -> Table:
    if not 1 <= len(args) <= 2:
        raise RayscaleError("dataset friedman1 is written friedman1:ROWS[:FEATURES], e.g. friedman1:20000:10")
    rows = _positive_int(args[0], "friedman1 ROWS", minimum=10)
    features = _positive_int(args[1], "friedman1 FEATURES", minimum=5) if len(args) == 2 else 10
    from sklearn.datasets import make_friedman1

    X, y = make_friedman1(n_samples=rows, n_features=features, noise=1.0, random_state=seed)
    return X, y, tuple(f"x{i}" for i in range(features)), ()


def _path_and_target(kind: str, args: list[str]) -> tuple[Path, str]:
    if len(args) < 2:
        raise RayscaleError(
            f"dataset {kind} is written {kind}:PATH:TARGET, e.g. {kind}:data/houses.{kind}:price"
        )
    # The path may itself contain ':' (Windows drives, odd names): the target is the last field.
    path, target = Path(":".join(args[:-1])), args[-1]
    if not path.is_file():
        raise RayscaleError(f"{kind.upper()} file not found: {path}")
    return path, target


def _csv(args: list[str], seed: int) -> Table:
    path, target = _path_and_target("csv", args)
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise RayscaleError(f"CSV file {path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RayscaleError(f"CSV file {path} cannot be parsed: {first}") from None
    return _table(frame, f"CSV file {path}", target)


def _parquet(args: list[str], seed: int) -> Table:
    path, target = _path_and_target("parquet", args)
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid, OSError, …
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RayscaleError(f"Parquet file {path} cannot be read: {first}") from None
    return _table(frame, f"Parquet file {path}", target)


def _table(frame: Any, what: str, target: str) -> Table:
    """A table file's frame as features and target: one-hot text features, the target as it is."""
    import pandas as pd

    if frame.empty:
        raise RayscaleError(f"{what} has no data rows")
    if target not in frame.columns:
        raise RayscaleError(
            f"{what} has no column {target!r} (columns: {', '.join(map(str, frame.columns))})"
        )
    missing = frame.isna().sum()
    if missing.any():
        where = ", ".join(
            f"{name!r} ({count} row{'s' if count > 1 else ''})"
            for name, count in missing[missing > 0].items()
        )
        raise RayscaleError(f"{what} has missing values in column {where}; drop or impute them first")
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise RayscaleError(f"{what} has no feature columns besides {target!r}")
    if len(frame) < 5:
        raise RayscaleError(f"{what} has {len(frame)} rows; at least 5 are needed for a hold-out split")
    X = pd.get_dummies(features, dtype=float)
    y = frame[target].to_numpy()
    return X.to_numpy(dtype=float), y, tuple(map(str, X.columns)), _suspects(features)


SKLEARN_SETS = ("diabetes", "breast_cancer", "wine", "iris", "digits")


def _sklearn(args: list[str], seed: int) -> Table:
    if len(args) != 1 or args[0] not in SKLEARN_SETS:
        raise RayscaleError(f"dataset sklearn is written sklearn:NAME, NAME one of {', '.join(SKLEARN_SETS)}")
    import sklearn.datasets

    data = getattr(sklearn.datasets, f"load_{args[0]}")()
    names = tuple(map(str, getattr(data, "feature_names", [f"x{i}" for i in range(data.data.shape[1])])))
    return data.data, data.target, names, ()


def _suspects(features: Any) -> tuple[str, ...]:
    """One warning per text column that looks like an identifier (unique per row) or a date:
    one-hot encoding it makes one useless feature per row."""
    import pandas as pd

    found = []
    for name in features.columns:
        column = features[name]
        if pd.api.types.is_numeric_dtype(column) or len(column) < 5:
            continue
        with contextlib.suppress(ValueError, TypeError), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas warns when it guesses date formats
            parsed = pd.to_datetime(column, errors="coerce", format="mixed")
            if parsed.notna().mean() >= 0.9:
                found.append(
                    f"column {name!r} looks like dates; it is one-hot encoded as "
                    f"{column.nunique()} features (convert or drop it first)"
                )
                continue
        if column.nunique() == len(column):
            found.append(
                f"column {name!r} is unique per row (an identifier?); it is one-hot encoded as "
                f"{len(column)} features (drop it first)"
            )
    return tuple(found)


LOADERS: dict[str, Callable[[list[str], int], Table]] = {
    "diabetes": _diabetes,
    "friedman1": _friedman1,
    "csv": _csv,
    "parquet": _parquet,
    "sklearn": _sklearn,
}


def load_dataset(
    spec: str, seed: int = 42, test_size: float = 0.2, validation_size: float = 0.0, task: str = "auto"
) -> Dataset:
    """Load ``spec`` (see module docstring), decide its task (``task``: auto, regression or
    classification) and split it with ``test_size`` and ``seed``; with ``validation_size`` that
    share of the training rows becomes the validation split. Classification splits are stratified."""
    if not 0.0 < test_size < 1.0:
        raise RayscaleError(f"--test-size must be between 0 and 1 (exclusive), got {test_size}")
    name, *args = spec.split(":")
    loader = LOADERS.get(name)
    if loader is None:
        raise RayscaleError(f"unknown dataset {name!r}; choose one of {', '.join(LOADERS)}")
    X, y, names, notes = loader(args, seed)
    chosen, why = detect(y, task)
    classes: tuple[str, ...] = ()
    if chosen == "classification":
        labels, y = np.unique(np.asarray(y).astype(str) if y.dtype.kind in "OUS" else y, return_inverse=True)
        classes = tuple(str(label) for label in labels)
        if len(classes) < 2:
            raise RayscaleError(
                f"dataset {spec} has one class ({classes[0]!r}); classification needs two or more"
            )
    else:
        y = np.asarray(y, dtype=float)
    from sklearn.model_selection import train_test_split

    def split(X_: np.ndarray, y_: np.ndarray, share: float) -> list[np.ndarray]:
        stratify = y_ if classes and np.bincount(y_).min() >= 2 else None
        try:
            return train_test_split(X_, y_, test_size=share, random_state=seed, stratify=stratify)
        except ValueError as exc:  # a split too small to hold every class
            raise RayscaleError(f"dataset {spec}: {str(exc).splitlines()[0]}") from None

    X_train, X_test, y_train, y_test = split(X, y, test_size)
    X_val = y_val = None
    if validation_size and len(X_train) >= 2:
        X_train, X_val, y_train, y_val = split(X_train, y_train, validation_size)
    if min(len(X_train), len(X_test)) == 0 or (validation_size and X_val is None):
        raise RayscaleError(f"--test-size {test_size} leaves an empty split for {len(X)} rows")
    return Dataset(spec, X_train, X_test, y_train, y_test, names, X_val, y_val, notes, chosen, why, classes)
