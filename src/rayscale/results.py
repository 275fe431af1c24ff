"""The result schema every phase writes and every report reads, and the bundle on disk.

A bundle is a directory holding ``result.json`` (this schema, written atomically),
``trials.csv`` (one row per trial and phase) and the PNG plots. ``SCHEMA_VERSION`` goes up
whenever a key changes meaning or disappears; added keys keep the version.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from rayscale.errors import RayscaleError

SCHEMA_VERSION = 1
RESULT_FILE = "result.json"
SCALE_FILE = "scale.json"
MANIFEST_FILE = "run.json"  # written when a run starts (rayscale.journal)
JOURNAL_FILE = "trials.jsonl"  # finished trials, appended as they finish
TRIALS_FILE = "trials.csv"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrialRecord(_Model):
    """One fitted config: what it was, how good it is, and where and when it ran."""

    index: int
    params: dict[str, Any]
    cost: float
    rmse: float
    r2: float
    mae: float
    fit_s: float
    predict_s: float
    queue_s: float
    node: str
    node_id: str
    pid: int
    start_ts: float
    end_ts: float
    retries: int = 0  # times the trial ran again after its worker or node was lost


class Timing(_Model):
    """Wall times of the timed rounds; ``wall_s`` is their median (the lower one for an even count),
    always one round's real wall so that the trials reported beside it are that round's."""

    walls_s: list[float]
    wall_s: float
    wall_min_s: float
    wall_max_s: float

    @classmethod
    def of(cls, walls: list[float]) -> Timing:
        ordered = sorted(walls)
        median = ordered[(len(ordered) - 1) // 2]
        return cls(walls_s=walls, wall_s=median, wall_min_s=ordered[0], wall_max_s=ordered[-1])


class SequentialPhase(Timing):
    """Every config fitted one after another in the driver process."""

    trials: list[TrialRecord]


class ParallelPhase(Timing):
    """Every config as a Ray task; ``connect_s`` and ``warmup_s`` are the cold start, kept apart."""

    connect_s: float
    warmup_s: float
    cpus_per_trial: float
    makespan_s: float
    trials: list[TrialRecord]


class BestModel(_Model):
    index: int
    params: dict[str, Any]
    rmse: float
    r2: float
    mae: float


class GridResult(_Model):
    configs: int
    cpus: int
    nodes: int
    sequential: SequentialPhase | None = None
    parallel: ParallelPhase | None = None
    speedup: float | None = None
    time_saved_s: float | None = None
    time_saved_pct: float | None = None
    lower_bound_s: float | None = None
    efficiency: float | None = None
    best: BestModel
    consistent: bool = True
    mismatches: list[str] = []


class TuneTrial(_Model):
    """One Tune trial: the same shape as a grid trial, plus how far it boosted."""

    index: int
    trial_id: str
    params: dict[str, Any]
    rmse: float
    r2: float
    mae: float
    compute_s: float
    rounds: int
    stopped_early: bool
    node: str
    node_id: str
    pid: int
    start_ts: float
    end_ts: float


class TuneModel(_Model):
    params: dict[str, Any]
    rmse: float
    r2: float
    mae: float


class TuneResult(_Model):
    """The Tune phase: wall against the compute bound, and baseline vs tuned quality."""

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
    resumed_with: int = 0  # trials an interrupted run had finished when this sweep resumed
    reran_after_resume: list[str] = []  # of those, trials Tune had not yet saved as finished (ran again)


class ClusterInfo(_Model):
    address: str
    mode: Literal["embedded", "existing"]
    cpus: int
    nodes: int
    connect_s: float
    ray_version: str


class Result(_Model):
    schema_version: int = SCHEMA_VERSION
    kind: Literal["run"] = "run"
    run_id: str
    status: Literal["complete", "partial"] = "complete"
    created_utc: str
    command: list[str]
    environment: dict[str, Any]
    options: dict[str, Any]
    dataset: dict[str, Any]
    cluster: ClusterInfo | None = None
    grid: GridResult | None = None
    tune: TuneResult | None = None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"


class StragglerRecord(_Model):
    index: int
    node: str
    node_id: str
    fit_s: float
    expected_s: float


class ScalePoint(_Model):
    """One phase at one node count: timings over the repeats, and what the analysis derives."""

    phase: Literal["grid_parallel", "tune"]
    nodes: int
    cpus: int
    walls_s: list[float]
    wall_s: float
    wall_min_s: float
    wall_max_s: float
    lower_bound_s: float
    efficiency_vs_bound: float
    speedup: float
    efficiency: float
    karp_flatt: float | None
    node_hours: float
    cost_per_trial: float | None
    connect_s: float
    warmup_s: float
    trials_per_node: dict[str, int]
    stragglers: list[StragglerRecord]
    trials: list[TrialRecord] | list[TuneTrial]


class ScaleFit(_Model):
    phase: str
    amdahl_serial_fraction: float
    amdahl_rmse: float
    usl_sigma: float
    usl_kappa: float
    usl_rmse: float
    usl_peak_nodes: float | None


class Cheapest(_Model):
    phase: str
    nodes: int
    cost: float
    wall_s: float


class ScaleResult(_Model):
    """A node-count sweep: the same work on 1..N nodes, with scaling-law fits and cost."""

    schema_version: int = SCHEMA_VERSION
    kind: Literal["scale"] = "scale"
    run_id: str
    created_utc: str
    command: list[str]
    environment: dict[str, Any]
    options: dict[str, Any]
    dataset: dict[str, Any]
    mode: Literal["local", "kuberay", "address"]
    cpus_per_node: int
    node_counts: list[int]
    points: list[ScalePoint]
    fits: list[ScaleFit]
    price_per_node_hour: float | None = None
    deadline_s: float | None = None
    cheapest: list[Cheapest] = []

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"


def new_run_id() -> str:
    """A sortable, collision-resistant id: UTC time plus 6 random hex digits."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def check_output_dir(out_dir: Path) -> None:
    """Fail before any work if ``out_dir`` already holds a result or cannot be created/written."""
    if any((out_dir / name).exists() for name in (RESULT_FILE, SCALE_FILE, MANIFEST_FILE)):
        raise RayscaleError(f"--output {out_dir} already holds a result; choose another directory", 3)
    if out_dir.exists() and not out_dir.is_dir():
        raise RayscaleError(f"--output {out_dir} exists and is not a directory", 3)
    probe = out_dir
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise RayscaleError(f"--output {out_dir} is not writable ({probe} does not allow writing)", 3)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: never half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a result is as readable as any file
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


TRIAL_COLUMNS = [
    "phase",
    "index",
    "n_estimators",
    "learning_rate",
    "max_depth",
    "rmse",
    "r2",
    "mae",
    "fit_s",
    "predict_s",
    "queue_s",
    "cost",
    "compute_s",
    "rounds",
    "stopped_early",
    "trial_id",
    "retries",
    "node",
    "node_id",
    "pid",
    "start_ts",
    "end_ts",
    "params",
]


def trials_csv(result: Result) -> str:
    """All trials of every phase as CSV, one row each, params also kept whole as JSON."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=TRIAL_COLUMNS)
    writer.writeheader()
    for phase, trials in all_trials(result):
        for t in trials:
            row = t.model_dump()
            row.update(
                phase=phase,
                n_estimators=t.params.get("n_estimators"),
                learning_rate=t.params.get("learning_rate"),
                max_depth=t.params.get("max_depth"),
                params=json.dumps(t.params, sort_keys=True),
            )
            writer.writerow(row)
    return out.getvalue()


def iter_trials(result: Result) -> list[tuple[str, list[TrialRecord]]]:
    """(phase name, trials) for each grid phase the result holds, in run order."""
    phases: list[tuple[str, list[TrialRecord]]] = []
    if result.grid and result.grid.sequential:
        phases.append(("grid_sequential", result.grid.sequential.trials))
    if result.grid and result.grid.parallel:
        phases.append(("grid_parallel", result.grid.parallel.trials))
    return phases


def all_trials(result: Result) -> list[tuple[str, list[TrialRecord] | list[TuneTrial]]]:
    """Every phase's trials, the Tune phase's included (labelled as in the metrics: ``tune``)."""
    phases: list[tuple[str, list[TrialRecord] | list[TuneTrial]]] = list(iter_trials(result))
    if result.tune:
        phases.append(("tune", result.tune.trials))
    return phases


def write_bundle(result: Result, out_dir: Path) -> Path:
    """Write ``trials.csv`` then ``result.json`` (last, so its presence means complete).

    The run's own ``run.json`` and ``trials.jsonl`` are already there; an existing result is not.
    """
    if (out_dir / RESULT_FILE).exists():
        raise RayscaleError(f"--output {out_dir} already holds a result; choose another directory", 3)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / TRIALS_FILE, trials_csv(result))
    path = out_dir / RESULT_FILE
    atomic_write(path, result.to_json())
    return path


def write_scale_bundle(result: ScaleResult, out_dir: Path) -> Path:
    """Write a scaling bundle's ``scale.json`` atomically (never over an existing result)."""
    check_output_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / SCALE_FILE
    atomic_write(path, result.to_json())
    return path


def load_result(path: Path) -> Result:
    """Read a run bundle's ``result.json`` (or the bundle directory) and validate it."""
    loaded = load_any(path)
    if not isinstance(loaded, Result):
        raise RayscaleError(f"{path} is a scaling bundle; use `rayscale report` on a run bundle")
    return loaded


def load_any(path: Path) -> Result | ScaleResult:
    """Read a run or scaling bundle (``result.json``, ``scale.json`` or their directory)."""
    if path.is_dir():
        path = path / (SCALE_FILE if (path / SCALE_FILE).is_file() else RESULT_FILE)
    if not path.is_file():
        raise RayscaleError(f"no result bundle at {path}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RayscaleError(f"{path} is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(document, dict) or "schema_version" not in document:
        raise RayscaleError(f"{path} is not a rayscale result (no schema_version)")
    if document["schema_version"] != SCHEMA_VERSION:
        raise RayscaleError(
            f"{path} has schema_version {document['schema_version']}; this rayscale reads {SCHEMA_VERSION}"
        )
    model: type[Result] | type[ScaleResult] = ScaleResult if document.get("kind") == "scale" else Result
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RayscaleError(f"{path} does not match the result schema at {where}: {first['msg']}") from None
