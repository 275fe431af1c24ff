"""The models the Tune phase sweeps (``--tune-model``): XGBoost, LightGBM, and scikit-learn
estimators that grow by ``warm_start`` or learn by ``partial_fit``.

Each trains one config up to ``max_rounds`` (boosting rounds, trees, iterations or epochs),
handing the model to ``emit`` every ``every`` rounds and at the last, with the seconds spent
training so far (scoring excluded); each fits its library-default baseline on the same split; and
each follows the task: XGBoost's ``reg:squarederror``, ``binary:logistic`` or ``multi:softprob``,
LightGBM's ``regression``, ``binary`` or ``multiclass``, a scikit-learn regressor or classifier.
A trial's best is reproducible from its params and rounds: :func:`train` with ``max_rounds`` set
to those rounds gives the same model.
"""

from __future__ import annotations

import importlib
import json
import pickle
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rayscale.errors import RayscaleError
from rayscale.options.scoring import PROBABILITY_METRICS, Task, classification_scores, regression_scores
from rayscale.work.data import Arrays
from rayscale.work.grid.configs import THREAD_PARAMS, estimator_class

# (rounds so far, training seconds so far, the model as it stands)
Emit = Callable[[int, float, Any], None]


class TuneFamily(ABC):
    """One kind of model the sweep can tune; ``spec`` is what ``--tune-model`` said."""

    spec: str
    unit: str  # what a round is, for tables and plots
    library: str  # the module it trains with

    def __init__(self, task: Task, n_classes: int) -> None:
        self.task = task
        self.n_classes = n_classes
        self.data_key: str | None = None  # what the data is, where a model caches its own form of it

    @abstractmethod
    def train(
        self, params: dict[str, Any], data: Arrays, max_rounds: int, every: int, nthread: int, seed: int,
        emit: Emit,
    ) -> None:  # fmt: skip
        """Train one config, calling ``emit`` at every report."""

    @abstractmethod
    def probabilities(self, model: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(predictions, class probabilities or None) of ``model`` on ``X``."""

    @abstractmethod
    def baseline(self, data: Arrays, nthread: int, seed: int) -> tuple[dict[str, Any], Any]:
        """The library's defaults fitted on the training split: (their effective params, the model)."""

    def load(self) -> None:
        """Import the library (seconds, once per worker process: xgboost imports scikit-learn)."""
        importlib.import_module(self.library)

    def eval_sets(self, data: Arrays, nthread: int) -> tuple[Any, Any]:
        """The test and validation features in the form the model predicts from."""
        return data[2], data[4]

    def save(self, model: Any, folder: str) -> None:
        Path(folder, "model.pkl").write_bytes(pickle.dumps(model))

    def scores(self, model: Any, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Every metric of the task for ``model`` on (X, y)."""
        predicted, proba = self.probabilities(model, X)
        if self.task == "regression":
            return regression_scores(y, predicted)
        return classification_scores(y, predicted, proba, self.n_classes)

    def check(self, space: dict[str, Any], metric: str) -> None:
        """Refuse, in one line, a space or a selection metric the model cannot take (before Ray
        starts)."""
        if metric in PROBABILITY_METRICS and not self.gives_probabilities():
            raise RayscaleError(f"--metric {metric} needs class probabilities; {self.spec} gives none")

    def gives_probabilities(self) -> bool:
        return True


def _labels(proba: np.ndarray) -> np.ndarray:
    return np.argmax(proba, axis=1)


def _binary(p: np.ndarray) -> np.ndarray:
    return np.column_stack([1.0 - p, p])


class _Timer:
    """Training seconds between reports: each ``lap`` adds the time since the last ``resume``."""

    def __init__(self) -> None:
        self.total = 0.0
        self.mark = time.perf_counter()

    def lap(self) -> float:
        self.total += time.perf_counter() - self.mark
        return self.total

    def resume(self) -> None:
        self.mark = time.perf_counter()


def _reports(rounds: int, every: int, total: int) -> bool:
    return rounds % every == 0 or rounds == total


class XGBoost(TuneFamily):
    spec = "xgboost"
    unit = "boosting rounds"
    library = "xgboost"
    _built: tuple[Any, Any, Any] | None = None
    # One (train, test, validation) DMatrix set per worker process, keyed by what the data is: a
    # reused actor runs many trials on the same table and builds it once.
    _cache: ClassVar[dict[str, tuple[Any, Any, Any]]] = {}

    def objective(self) -> dict[str, Any]:
        if self.task == "regression":
            return {"objective": "reg:squarederror"}
        if self.n_classes == 2:
            return {"objective": "binary:logistic"}
        return {"objective": "multi:softprob", "num_class": self.n_classes}

    def params(self, config: dict[str, Any], nthread: int, seed: int) -> dict[str, Any]:
        return {**self.objective(), "tree_method": "hist", "nthread": nthread, "seed": seed, **config}

    def matrices(self, data: Arrays, nthread: int) -> tuple[Any, Any, Any]:
        """The data as DMatrices: built once per model (its test set and its training use the same),
        and with ``data_key`` once per worker process."""
        import xgboost as xgb

        key = self.data_key
        if self._built is not None:
            return self._built
        if key is not None and key in self._cache:
            return self._cache[key]
        X_train, y_train, X_test, _, X_val, _ = data
        built = (
            xgb.DMatrix(X_train, label=y_train, nthread=nthread),
            xgb.DMatrix(X_test, nthread=nthread),
            None if X_val is None else xgb.DMatrix(X_val, nthread=nthread),
        )
        if key is not None:
            self._cache.clear()
            self._cache[key] = built
        self._built = built
        return built

    def eval_sets(self, data: Arrays, nthread: int) -> tuple[Any, Any]:
        _, test, val = self.matrices(data, nthread)
        return test, val

    def train(
        self, params: dict[str, Any], data: Arrays, max_rounds: int, every: int, nthread: int, seed: int,
        emit: Emit,
    ) -> None:  # fmt: skip
        import xgboost as xgb

        dtrain = self.matrices(data, nthread)[0]
        timer = _Timer()

        class Reporter(xgb.callback.TrainingCallback):
            def before_training(self, model: Any) -> Any:
                timer.resume()
                return model

            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                timer.lap()
                if _reports(epoch + 1, every, max_rounds):
                    emit(epoch + 1, timer.total, model)
                timer.resume()
                return False

        xgb.train(
            self.params(params, nthread, seed), dtrain, num_boost_round=max_rounds, callbacks=[Reporter()]
        )

    def probabilities(self, model: Any, X: Any) -> tuple[np.ndarray, np.ndarray | None]:
        import xgboost as xgb

        if hasattr(model, "get_booster"):  # the scikit-learn wrapper (the baseline)
            model = model.get_booster()
        p = model.predict(X if isinstance(X, xgb.DMatrix) else xgb.DMatrix(X))
        if self.task == "regression":
            return p, None
        proba = _binary(p) if self.n_classes == 2 else p
        return _labels(proba), proba

    def baseline(self, data: Arrays, nthread: int, seed: int) -> tuple[dict[str, Any], Any]:
        """``XGBRegressor()``/``XGBClassifier()``; the params recorded are read back from the booster."""
        import xgboost as xgb

        kind = xgb.XGBRegressor if self.task == "regression" else xgb.XGBClassifier
        model = kind(n_jobs=nthread, random_state=seed).fit(data[0], data[1])
        booster = model.get_booster()
        tree = json.loads(booster.save_config())["learner"]["gradient_booster"]["tree_train_param"]
        params: dict[str, Any] = {
            "learning_rate": round(float(tree["eta"]), 6),
            "n_estimators": booster.num_boosted_rounds(),
        }
        params.update({k: float(tree[k]) for k in ("subsample", "colsample_bytree", "min_child_weight")})
        params["max_depth"] = int(tree["max_depth"])
        return params, model

    def save(self, model: Any, folder: str) -> None:
        model.save_model(str(Path(folder, "model.ubj")))


class LightGBM(TuneFamily):
    spec = "lightgbm"
    unit = "boosting rounds"
    library = "lightgbm"
    BASELINE_PARAMS = ("n_estimators", "learning_rate", "num_leaves", "min_child_samples", "reg_lambda")

    def params(self, config: dict[str, Any], nthread: int, seed: int) -> dict[str, Any]:
        if self.task == "regression":
            objective: dict[str, Any] = {"objective": "regression"}
        elif self.n_classes == 2:
            objective = {"objective": "binary"}
        else:
            objective = {"objective": "multiclass", "num_class": self.n_classes}
        fixed = {"num_threads": nthread, "seed": seed, "deterministic": True, "force_col_wise": True}
        return {**objective, **fixed, "verbose": -1, **config}

    def train(
        self, params: dict[str, Any], data: Arrays, max_rounds: int, every: int, nthread: int, seed: int,
        emit: Emit,
    ) -> None:  # fmt: skip
        import lightgbm as lgb

        full = self.params(params, nthread, seed)
        dtrain = lgb.Dataset(data[0], label=data[1], params=full).construct()
        timer = _Timer()

        def reporter(env: Any) -> None:
            timer.lap()
            if _reports(env.iteration + 1, every, max_rounds):
                emit(env.iteration + 1, timer.total, env.model)
            timer.resume()

        timer.resume()
        lgb.train(full, dtrain, num_boost_round=max_rounds, callbacks=[reporter])

    def probabilities(self, model: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if hasattr(model, "booster_"):  # the scikit-learn wrapper (the baseline)
            model = model.booster_
        p = model.predict(X)
        if self.task == "regression":
            return p, None
        proba = _binary(p) if self.n_classes == 2 else p
        return _labels(proba), proba

    def baseline(self, data: Arrays, nthread: int, seed: int) -> tuple[dict[str, Any], Any]:
        """``LGBMRegressor()``/``LGBMClassifier()`` with their defaults."""
        import lightgbm as lgb

        kind = lgb.LGBMRegressor if self.task == "regression" else lgb.LGBMClassifier
        model = kind(n_jobs=nthread, random_state=seed, verbose=-1).fit(data[0], data[1])
        return {k: model.get_params()[k] for k in self.BASELINE_PARAMS}, model

    def save(self, model: Any, folder: str) -> None:
        model.save_model(str(Path(folder, "model.txt")))


class Sklearn(TuneFamily):
    """A scikit-learn estimator grown by ``warm_start`` (more ``n_estimators`` or ``max_iter`` at
    each report) or trained by ``partial_fit`` (one epoch per round)."""

    def __init__(self, spec: str, task: Task, n_classes: int) -> None:
        super().__init__(task, n_classes)
        self.spec = spec
        self.path = spec.removeprefix("sklearn:")
        self.library = self.path.rpartition(".")[0]
        cls = estimator_class(self.path)
        self.defaults = dict(cls().get_params())
        if "warm_start" in self.defaults and "n_estimators" in self.defaults:
            self.growth: str | None = "n_estimators"
            self.unit = "estimators"
        elif hasattr(cls, "partial_fit"):
            self.growth, self.unit = None, "epochs"
        elif "warm_start" in self.defaults and "max_iter" in self.defaults:
            self.growth, self.unit = "max_iter", "iterations"
        else:
            raise RayscaleError(
                f"--tune-model {spec}: {self.path} neither grows by warm_start "
                "(n_estimators or max_iter) nor learns by partial_fit"
            )

    def check(self, space: dict[str, Any], metric: str) -> None:
        unknown = sorted(set(space) - set(self.defaults))
        if unknown:
            raise RayscaleError(
                f"search space: {self.path} has no parameter {unknown[0]!r}; "
                f"its parameters are {', '.join(sorted(self.defaults))}"
            )
        if self.growth in space:
            raise RayscaleError(f"search space: {self.growth!r} is what the sweep grows (--max-rounds)")
        super().check(space, metric)

    def gives_probabilities(self) -> bool:
        return hasattr(self.make({}, 1, 0), "predict_proba")

    def _fixed(self, nthread: int, seed: int) -> dict[str, Any]:
        """Threads and random state, set as the grid sets them, where the class has them."""
        fixed: dict[str, Any] = {k: nthread for k in THREAD_PARAMS if k in self.defaults}
        if "random_state" in self.defaults:
            fixed["random_state"] = seed
        return fixed

    def make(self, params: dict[str, Any], nthread: int, seed: int) -> Any:
        fixed = self._fixed(nthread, seed)
        if "early_stopping" in self.defaults:
            fixed["early_stopping"] = False  # the sweep, not the estimator, decides when to stop
        if self.growth is not None:
            fixed["warm_start"] = True
        return estimator_class(self.path)(**{**fixed, **params})

    def train(
        self, params: dict[str, Any], data: Arrays, max_rounds: int, every: int, nthread: int, seed: int,
        emit: Emit,
    ) -> None:  # fmt: skip
        model = self.make(params, nthread, seed)
        X, y = data[0], data[1]
        timer = _Timer()
        if self.growth is None:
            classes = {"classes": np.arange(self.n_classes)} if self.task == "classification" else {}
            for epoch in range(1, max_rounds + 1):
                timer.resume()
                model.partial_fit(X, y, **classes)
                timer.lap()
                if _reports(epoch, every, max_rounds):
                    emit(epoch, timer.total, model)
            return
        for rounds in [*range(every, max_rounds, every), max_rounds]:
            model.set_params(**{self.growth: rounds})
            timer.resume()
            model.fit(X, y)
            timer.lap()
            emit(rounds, timer.total, model)

    def probabilities(self, model: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        predicted = model.predict(X)
        if self.task == "classification" and hasattr(model, "predict_proba"):
            return predicted, model.predict_proba(X)
        return predicted, None

    def baseline(self, data: Arrays, nthread: int, seed: int) -> tuple[dict[str, Any], Any]:
        """The class with its defaults (its random state and threads set as the trials' are)."""
        model = estimator_class(self.path)(**self._fixed(nthread, seed)).fit(data[0], data[1])
        params = model.get_params()
        shown = [k for k in (self.growth, "max_iter", "learning_rate", "max_depth", "alpha") if k]
        return {k: params[k] for k in dict.fromkeys(shown) if k in params}, model


def family_for(spec: str, task: Task, n_classes: int) -> TuneFamily:
    """The Tune model ``--tune-model`` names, for the dataset's task."""
    if spec == "xgboost":
        return XGBoost(task, n_classes)
    if spec == "lightgbm":
        return LightGBM(task, n_classes)
    if spec.startswith("sklearn:"):
        return Sklearn(spec, task, n_classes)
    raise RayscaleError(f"--tune-model {spec!r}: choose xgboost, lightgbm or sklearn:CLASS")
