"""The one versioned schema every phase writes and every report, plot and compare reads.

Stored fields are what was measured; every figure derived from them (medians, speedup,
efficiencies, the speedup breakdown, the best model) is a computed field, written into the
JSON for readers but recomputed on load, so each figure is defined in exactly one place.

Schema history (``SCHEMA_VERSION``; added keys keep the version, changed or removed keys bump it):

* 1 — 2026-11-22: first release.
* 2 — 2026-11-23: timings keep every round (``rounds``; ``rounds_s`` and the median, min, max,
  stdev and MAD derived); grid and Tune trials share one base (``duration_s``, ``state``);
  ``grid.parallel_efficiency`` is speedup / CPUs and the former figure is
  ``grid.schedule_efficiency``; ``grid.breakdown``, ``grid.speedup_ci``, ``grid.end_to_end``;
  ``status`` is "inconsistent" when the two runners disagree; run and scale bundles share one
  header (:class:`BundleHeader`). Version-1 bundles still load, through
  :func:`rayscale.results.bundle.upgrade`.
  Added later (same version): ``tune.plain_loop_s`` and ``tune.end_to_end``; scale points'
  ``first_trial_s`` (the resize ramp).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from enum import Enum
from typing import Any, Literal

from pydantic import computed_field, model_validator

from rayscale.options.scoring import Task, ranking_key
from rayscale.results.asha_outcomes import AshaOutcomes
from rayscale.results.base import StrictModel
from rayscale.results.stats import Stats, paired_ratio

SCHEMA_VERSION = 2


# -- trials -------------------------------------------------------------------------------------


class TrialState(str, Enum):
    ok = "ok"
    stopped_early = "stopped_early"  # ASHA stopped it before its full budget
    failed = "failed"  # counted in the metrics; a failed trial fails the run
    retried = "retried"  # finished, after its worker or node was lost at least once


class Scored(StrictModel):
    """Scores on every metric of the task (:mod:`rayscale.options.scoring`): ``metrics`` on the test split
    (with ``--cv``, on the task's held-out fold), ``val_metrics`` on the validation split carved
    from the training rows (``--validation-size``), which is what selection uses when present. A
    regression's ``rmse``/``r2``/``mae`` (and ``val_rmse``) are also kept on their own, as bundles
    written before ``metrics`` existed hold them; either form fills the other."""

    rmse: float | None = None
    r2: float | None = None
    mae: float | None = None
    val_rmse: float | None = None
    metrics: dict[str, float] = {}
    val_metrics: dict[str, float] = {}

    @model_validator(mode="after")
    def _regression_metrics(self) -> Scored:
        if not self.metrics and self.rmse is not None:
            self.metrics = {"rmse": self.rmse, "r2": self.r2 or 0.0, "mae": self.mae or 0.0}
        if not self.val_metrics and self.val_rmse is not None:
            self.val_metrics = {"rmse": self.val_rmse}
        if self.rmse is None and "rmse" in self.metrics:
            self.rmse, self.r2, self.mae = (self.metrics.get(k) for k in ("rmse", "r2", "mae"))
        if self.val_rmse is None and "rmse" in self.val_metrics:
            self.val_rmse = self.val_metrics["rmse"]
        return self

    def selection(self, metric: str = "rmse") -> float:
        """The score a best is chosen on: on validation when there is one, else the hold-out."""
        return (self.val_metrics or self.metrics)[metric]


class Trial(Scored):
    """What every trial has, grid or Tune: its config, quality (:class:`Scored`), and where and
    when it ran."""

    index: int
    params: dict[str, Any]
    node: str
    node_id: str
    pid: int
    start_ts: float
    end_ts: float

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration_s(self) -> float:
        """The trial's compute: the fit for the grid, boosting for Tune."""
        return self._duration()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def state(self) -> TrialState:
        return self._state()

    @abstractmethod
    def _duration(self) -> float: ...

    def _state(self) -> TrialState:
        return TrialState.ok


class TrialRecord(Trial):
    """One fitted grid config."""

    cost: float
    fit_s: float
    predict_s: float
    queue_s: float
    retries: int = 0  # times the trial ran again after its worker or node was lost
    fold: int | None = None  # --cv: the held-out fold this task scored on

    def _duration(self) -> float:
        return self.fit_s

    def _state(self) -> TrialState:
        return TrialState.retried if self.retries else TrialState.ok


class TuneReport(Scored):
    """One report of a Tune trial: after ``rounds`` rounds, its scores and compute so far."""

    rounds: int
    compute_s: float
    ts: float | None = None  # when the trial sent it (wall clock); the order ASHA saw reports in

    def value(self, key: str) -> float:
        """A reported key as Tune saw it: a metric, or ``val_`` and a metric on validation."""
        if key.startswith("val_"):
            return self.val_metrics[key.removeprefix("val_")]
        return self.metrics[key]


class TuneTrial(Trial):
    """One Tune trial: rounds run, and whether ASHA stopped it early."""

    trial_id: str
    compute_s: float
    rounds: int
    stopped_early: bool
    reports: list[TuneReport] = []
    # its reports past where ASHA stopped it, from the curves pass (rayscale.work.tune.outcomes);
    # not in any timing
    curve: list[TuneReport] = []

    @property
    def full_reports(self) -> list[TuneReport]:
        """Every report to the full budget: those sent to Tune, then the curves pass's."""
        last = self.reports[-1].rounds if self.reports else 0
        return [*self.reports, *(r for r in self.curve if r.rounds > last)]

    def _duration(self) -> float:
        return self.compute_s

    def _state(self) -> TrialState:
        return TrialState.stopped_early if self.stopped_early else TrialState.ok


# -- timings --------------------------------------------------------------------------------------


class Round(StrictModel):
    """One timed round of a phase, reduced to what the figures need."""

    wall_s: float
    busy_s: float  # Σ trial duration
    longest_s: float  # the longest trial
    span_s: float  # first trial start to last trial end (the makespan)
    ray_cpu_s: float | None = None  # CPU seconds Ray's own processes used during the round
    tasks: int | None = None  # Ray tasks the round ran: fewer than its trials when tiny ones were batched

    @classmethod
    def of(cls, wall_s: float, trials: list[TrialRecord] | list[TuneTrial], **extra: Any) -> Round:
        durations = [t.duration_s for t in trials]
        span = max(t.end_ts for t in trials) - min(t.start_ts for t in trials) if trials else 0.0
        return cls(
            wall_s=wall_s, busy_s=sum(durations), longest_s=max(durations, default=0.0), span_s=span, **extra
        )


class Rounds(StrictModel):
    """Every round of one timing; the figures shown are derived from all of them."""

    rounds: list[Round]

    @property
    def stats(self) -> Stats:
        return Stats([r.wall_s for r in self.rounds])

    def median(self, field: str) -> float:
        return Stats([getattr(r, field) for r in self.rounds]).median

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rounds_s(self) -> list[float]:
        return [r.wall_s for r in self.rounds]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def wall_s(self) -> float:
        """The median round (the mean of the middle two for an even count)."""
        return self.stats.median

    @computed_field  # type: ignore[prop-decorator]
    @property
    def wall_min_s(self) -> float:
        return self.stats.min

    @computed_field  # type: ignore[prop-decorator]
    @property
    def wall_max_s(self) -> float:
        return self.stats.max

    @computed_field  # type: ignore[prop-decorator]
    @property
    def wall_stdev_s(self) -> float:
        return self.stats.stdev

    @computed_field  # type: ignore[prop-decorator]
    @property
    def wall_mad_s(self) -> float:
        return self.stats.mad


class SequentialPhase(Rounds):
    """Every config fitted one after another in the driver; ``trials`` are the round nearest the median."""

    warmup_s: float = 0.0
    trials: list[TrialRecord]


CostSource = Literal["formula", "sequential", "pilot"]


class ParallelPhase(Rounds):
    """Every config as a Ray task; ``connect_s`` and ``warmup_s`` are the cold start, kept apart.

    ``cost_source`` is where the longest-first order came from: the cost formula, the measured
    sequential round, or a pilot (``pilot_s`` seconds in the driver, before the timed rounds)."""

    connect_s: float
    warmup_s: float
    cpus_per_trial: float
    trials: list[TrialRecord]
    cost_source: CostSource = "formula"
    pilot_s: float = 0.0


# -- the grid's figures -------------------------------------------------------------------------


class BestModel(Scored):
    """The chosen config and its scores: on the test split, and with ``--cv`` its mean CV scores."""

    index: int
    params: dict[str, Any]
    cv_metrics: dict[str, float] = {}  # --cv: the mean over folds the choice was made on


def cv_means(trials: list[TrialRecord]) -> dict[int, dict[str, float]]:
    """Each config's metrics averaged over its folds (``--cv``)."""
    folds: dict[int, list[TrialRecord]] = {}
    for t in trials:
        folds.setdefault(t.index, []).append(t)
    return {
        index: {m: sum(t.metrics[m] for t in group) / len(group) for m in group[0].metrics}
        for index, group in sorted(folds.items())
    }


def best_of(trials: list[TrialRecord], metric: str = "rmse") -> BestModel:
    """The best selection score on ``metric`` (on validation when there is one; with ``--cv`` the
    mean over folds); ties go to the earlier config."""
    if any(t.fold is not None for t in trials):
        means = cv_means(trials)
        index = min(means, key=lambda i: (ranking_key(metric, means[i][metric]), i))
        top = next(t for t in trials if t.index == index)
        return BestModel(index=index, params=top.params, cv_metrics=means[index])
    top = min(trials, key=lambda t: (ranking_key(metric, t.selection(metric)), t.index))
    return BestModel(index=top.index, params=top.params, metrics=top.metrics, val_metrics=top.val_metrics)


def config_scores(trials: list[TrialRecord], metric: str) -> list[tuple[int, dict[str, Any], float]]:
    """(index, params, score) per config on ``metric``: its test score, or with ``--cv`` its mean
    over folds."""
    if any(t.fold is not None for t in trials):
        params = {t.index: t.params for t in trials}
        return [(i, params[i], m[metric]) for i, m in cv_means(trials).items()]
    return [(t.index, t.params, t.metrics[metric]) for t in sorted(trials, key=lambda t: t.index)]


def swept_params(trials: list[TrialRecord] | list[TuneTrial]) -> list[str]:
    """Parameters that take more than one value across the trials (all of them for a single config)."""
    names = sorted({name for t in trials for name in t.params})
    varying = [n for n in names if len({repr(t.params.get(n)) for t in trials}) > 1]
    return varying or [n for n in names if n != "random_state"]


def trial_slots(cpus: float, cpus_per_trial: float) -> int:
    """How many trials run at once on ``cpus`` CPUs: whole trials only (0 when not one fits)."""
    return int(cpus // cpus_per_trial)


def lower_bound(busy_s: float, longest_s: float, slots: float) -> float:
    """No schedule on ``slots`` trial slots can finish sooner than max(Σ duration / slots, longest)
    (slots of unequal speed: their capacity, Σ 1 / duration factor)."""
    if slots <= 0:
        raise ValueError("slots must be positive")
    return max(busy_s / slots, longest_s)


class EndToEnd(StrictModel):
    """Did Ray help, counting its cold start? Derived from the sequential and parallel medians."""

    sequential_s: float
    parallel_s: float  # warm parallel wall + connect + warm-up
    cold_start_s: float
    saved_per_config_s: float
    break_even_configs: int | None  # configs of this kind at which the cold start is paid back
    pays_off: bool

    @classmethod
    def of(cls, sequential_s: float, warm_s: float, cold_start_s: float, configs: int) -> EndToEnd:
        saved = (sequential_s - warm_s) / configs
        even = math.ceil(cold_start_s / saved) if saved > 0 else None
        return cls(
            sequential_s=sequential_s,
            parallel_s=warm_s + cold_start_s,
            cold_start_s=cold_start_s,
            saved_per_config_s=saved,
            break_even_configs=even,
            pays_off=sequential_s > warm_s + cold_start_s,
        )

    def sentence(self, what: str = "Ray", cost: str = "cold start") -> str:
        if self.break_even_configs is None:
            return f"{what} did not pay off: it is no faster per config even when warm"
        verdict = "pays off" if self.pays_off else "did not pay off on this run"
        return (
            f"{what} {verdict}: the {self.cold_start_s:.1f}s {cost} is paid back from "
            f"{self.break_even_configs} configs of this kind"
        )


def breakdown(
    seq: Rounds,
    par: Rounds,
    cpus: float,
    slots: int,
    sequential_wall_s: float,
    parallel_wall_s: float,
    base_cpus: float = 1,
) -> dict[str, float]:
    """Named factors that multiply exactly to the parallel efficiency, base wall × base CPUs /
    (CPUs × parallel wall) — speedup / CPUs against the sequential run (``base_cpus`` 1), or
    against the smallest node count in a scale:

    * ``baseline``: base wall × base CPUs / Σ base fit (> 1: the baseline's own non-fit time);
    * ``contention``: Σ sequential fit / Σ parallel fit (fits slower side by side);
    * ``granularity``: Σ parallel fit / (CPUs × lower bound) (the longest fit, or CPUs no slot uses);
    * ``schedule``: lower bound / makespan (tail and imbalance);
    * ``dispatch``: makespan / parallel wall (submit, transfer, gather).
    """
    busy_s, busy_p = seq.median("busy_s"), par.median("busy_s")
    bound = lower_bound(busy_p, par.median("longest_s"), slots)
    span = par.median("span_s")
    return {
        "baseline": sequential_wall_s * base_cpus / busy_s,
        "contention": busy_s / busy_p,
        "granularity": busy_p / (cpus * bound),
        "schedule": bound / span,
        "dispatch": span / parallel_wall_s,
    }


class GridResult(StrictModel):
    configs: int
    cpus: int
    nodes: int
    cpus_per_trial: float = 1
    sequential: SequentialPhase | None = None
    parallel: ParallelPhase | None = None
    mismatches: list[str] = []
    selected_on: Literal["test", "validation", "cv"] = "test"
    task: Literal["regression", "classification"] = "regression"
    metric: str = "rmse"  # what the best is chosen on
    refit: BestModel | None = None  # --cv: the chosen config fitted on the whole training split

    @property
    def reference(self) -> SequentialPhase | ParallelPhase:
        phase = self.parallel or self.sequential
        assert phase is not None, "a grid result holds at least one phase"
        return phase

    @computed_field  # type: ignore[prop-decorator]
    @property
    def slots(self) -> int:
        return trial_slots(self.cpus, self.cpus_per_trial)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def best(self) -> BestModel:
        """The chosen config; with ``--cv``, refit on the training split and scored on the test split."""
        chosen = best_of(self.reference.trials, self.metric)
        if self.refit is not None:
            return self.refit.model_copy(update={"cv_metrics": chosen.cv_metrics})
        return chosen

    @property
    def best_score(self) -> float:
        """The best model's score on the selection metric (its test score; the CV mean without a refit)."""
        best = self.best
        return (best.metrics or best.cv_metrics)[self.metric]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def lower_bound_s(self) -> float | None:
        if self.parallel is None:
            return None
        return lower_bound(self.parallel.median("busy_s"), self.parallel.median("longest_s"), self.slots)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def schedule_efficiency(self) -> float | None:
        """Lower bound / parallel wall: how close the schedule came to the best possible one."""
        if self.parallel is None or self.lower_bound_s is None:
            return None
        return self.lower_bound_s / self.parallel.wall_s

    def _paired(self) -> tuple[float, tuple[float, float]] | None:
        if self.sequential is None or self.parallel is None:
            return None
        n = min(len(self.sequential.rounds), len(self.parallel.rounds))
        return paired_ratio(self.sequential.rounds_s[:n], self.parallel.rounds_s[:n])

    @computed_field  # type: ignore[prop-decorator]
    @property
    def speedup(self) -> float | None:
        """Sequential median / parallel median."""
        if self.sequential is None or self.parallel is None:
            return None
        return self.sequential.wall_s / self.parallel.wall_s

    @computed_field  # type: ignore[prop-decorator]
    @property
    def speedup_ci(self) -> tuple[float, float] | None:
        """95 % bootstrap interval over the paired (interleaved) rounds."""
        paired = self._paired()
        return None if paired is None else paired[1]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def parallel_efficiency(self) -> float | None:
        """Speedup / CPUs: the standard definition."""
        return None if self.speedup is None else self.speedup / self.cpus

    @computed_field  # type: ignore[prop-decorator]
    @property
    def parallel_efficiency_ci(self) -> tuple[float, float] | None:
        ci = self.speedup_ci
        return None if ci is None else (ci[0] / self.cpus, ci[1] / self.cpus)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def time_saved_s(self) -> float | None:
        if self.sequential is None or self.parallel is None:
            return None
        return self.sequential.wall_s - self.parallel.wall_s

    @computed_field  # type: ignore[prop-decorator]
    @property
    def time_saved_pct(self) -> float | None:
        if self.time_saved_s is None or self.sequential is None:
            return None
        return 100.0 * self.time_saved_s / self.sequential.wall_s

    @computed_field  # type: ignore[prop-decorator]
    @property
    def breakdown(self) -> dict[str, float] | None:
        if self.sequential is None or self.parallel is None:
            return None
        return breakdown(
            self.sequential,
            self.parallel,
            self.cpus,
            self.slots,
            self.sequential.wall_s,
            self.parallel.wall_s,
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ray_cpu_share(self) -> float | None:
        """CPU seconds of Ray's own processes / (CPUs × wall), median over the parallel rounds."""
        if self.parallel is None or any(r.ray_cpu_s is None for r in self.parallel.rounds):
            return None
        return Stats([(r.ray_cpu_s or 0.0) / (self.cpus * r.wall_s) for r in self.parallel.rounds]).median

    @computed_field  # type: ignore[prop-decorator]
    @property
    def end_to_end(self) -> EndToEnd | None:
        if self.sequential is None or self.parallel is None:
            return None
        cold = self.parallel.connect_s + self.parallel.warmup_s
        return EndToEnd.of(self.sequential.wall_s, self.parallel.wall_s, cold, self.configs)


# -- Tune ---------------------------------------------------------------------------------------


class TuneModel(Scored):
    params: dict[str, Any]
    rounds: int | None = None  # rounds of the reported model (the Tune best's)


class TuneResult(StrictModel):
    """The Tune phase: wall against the compute bound, and baseline vs tuned quality."""

    model: str = "xgboost"  # --tune-model
    unit: str = "boosting rounds"  # what one of its rounds is
    task: Task = "regression"
    metric: str = "rmse"  # the selection metric (on validation when there is a validation split)
    scheduler: Literal["asha", "none"]
    sampling: Literal["grid", "random"]
    wall_s: float
    compute_s: float
    compute_bound_s: float
    overhead_s: float
    startup_s: float
    cpus: int
    cpus_per_trial: int
    max_concurrent: int
    max_rounds: int
    report_every: int
    grace_period: int | None
    reduction_factor: int | None
    reuse_actors: bool
    checkpoint: bool
    loggers: bool
    rounds_run: int
    rounds_budget: int
    stopped_early: int
    storage: str
    trials: list[TuneTrial]
    baseline: TuneModel
    best: TuneModel
    improvement_pct: float
    asha_outcomes: AshaOutcomes | None = (
        None  # ASHA's outcome over replays of this sweep (rayscale.work.tune.outcomes)
    )
    resumed_with: int = 0  # trials an interrupted run had finished when this sweep resumed
    reran_after_resume: list[str] = []  # of those, trials Tune had not yet saved as finished (ran again)

    @property
    def best_score(self) -> float:
        """The best's test score on the selection metric."""
        return self.best.metrics[self.metric]

    @property
    def model_name(self) -> str:
        """The Tune model as tables name it: XGBoost, LightGBM, or the scikit-learn class."""
        return {"xgboost": "XGBoost", "lightgbm": "LightGBM"}.get(self.model, self.model.rpartition(".")[2])

    @computed_field  # type: ignore[prop-decorator]
    @property
    def parallel_efficiency(self) -> float:
        """Σ compute / (CPUs × wall), Tune's start-up included."""
        return self.compute_s / (self.cpus * self.wall_s)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def parallel_efficiency_after_startup(self) -> float:
        """Σ compute / (CPUs × (wall − start-up)): the sweep once its first trial runs."""
        return self.compute_s / (self.cpus * max(self.wall_s - self.startup_s, 1e-9))

    @computed_field  # type: ignore[prop-decorator]
    @property
    def lower_bound_s(self) -> float:
        """Tune's bound: max(Σ compute / CPUs in use, the longest trial)."""
        return max(self.compute_bound_s, max((t.compute_s for t in self.trials), default=0.0))

    @computed_field  # type: ignore[prop-decorator]
    @property
    def plain_loop_s(self) -> float:
        """Estimated seconds of the loop one would write without Tune: every config boosted to
        ``max_rounds`` in one process, each at the seconds per round its trial measured."""
        return sum(t.compute_s / t.rounds * self.max_rounds for t in self.trials if t.rounds)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def end_to_end(self) -> EndToEnd:
        """Did Tune (parallel trials + ASHA) beat the plain loop, counting its start-up?"""
        return EndToEnd.of(self.plain_loop_s, self.wall_s - self.startup_s, self.startup_s, len(self.trials))


# -- bundles ----------------------------------------------------------------------------------


class ClusterInfo(StrictModel):
    address: str
    mode: Literal["embedded", "existing"]
    cpus: int
    nodes: int
    connect_s: float
    ray_version: str


class BundleHeader(StrictModel):
    """What every bundle starts with, run or scale."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    created_utc: str
    command: list[str]
    environment: dict[str, Any]
    options: dict[str, Any]
    dataset: dict[str, Any]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"


class Result(BundleHeader):
    kind: Literal["run"] = "run"
    cluster: ClusterInfo | None = None
    grid: GridResult | None = None
    tune: TuneResult | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> Literal["complete", "inconsistent"]:
        return "inconsistent" if self.grid is not None and self.grid.mismatches else "complete"
