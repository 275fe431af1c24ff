"""Bundles on disk: the directory a run or scale writes, and reading it back.

A run bundle holds ``run.json`` and ``trials.jsonl`` from the moment work starts
(:mod:`rayscale.work.execution.journal`), then ``trials.csv``, the PNG plots and, last and atomically,
``result.json`` (:mod:`rayscale.results.schema`). A scale bundle holds ``scale.json`` and its plots.
What is stored of the options and the command line goes through :func:`stored_options` and
:func:`redacted_command`, which hide credentials, for both kinds.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rayscale.errors import RayscaleError
from rayscale.options.commands import GRID_PARALLEL, GRID_SEQUENTIAL, TUNE, check_output_dir, redact_url
from rayscale.options.files import JOURNAL_FILE, MANIFEST_FILE, RESULT_FILE, SCALE_FILE, TRIALS_FILE
from rayscale.results.scaling import ScaleResult
from rayscale.results.schema import SCHEMA_VERSION, Result, TrialRecord, TuneTrial

READABLE_VERSIONS = (1, SCHEMA_VERSION)


def new_run_id() -> str:
    """A sortable, collision-resistant id: UTC time plus 6 random hex digits."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- what is stored of the options ----------------------------------------------------------


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        if "://" not in value:
            return value
        option, sep, url = value.partition("=") if value.startswith("--") else ("", "", value)
        return option + sep + redact_url(url)
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def redacted_command(command: list[str]) -> list[str]:
    """The command line with credentials in URLs (``--push-gateway=https://user:pw@…``) hidden."""
    return [_redact(arg) for arg in command]


def stored_options(options: Any) -> dict[str, Any]:
    """Options as a bundle stores them, for run and scale alike: through JSON once (tuples →
    lists, paths → str), without the command line (stored apart), credentials redacted."""
    fields = asdict(options) if is_dataclass(options) and not isinstance(options, type) else dict(options)
    fields.pop("command", None)
    if isinstance(fields.get("run"), dict):
        fields["run"].pop("command", None)
    return _redact(json.loads(json.dumps(fields, default=str)))


# -- the bundle directory -------------------------------------------------------------------


def make_dir(out_dir: Path) -> None:
    """Create the bundle directory, as a one-line error when the filesystem refuses."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RayscaleError(f"--output {out_dir} cannot be created: {exc.strerror or exc}", 3) from None


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


# -- trials.csv -------------------------------------------------------------------------------

FIXED_COLUMNS = [
    "phase",
    "index",
    "state",
    "rmse",
    "r2",
    "mae",
    "val_rmse",
    "duration_s",
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


def all_trials(result: Result) -> list[tuple[str, list[TrialRecord] | list[TuneTrial]]]:
    """(phase, trials) of every phase the result holds, in run order (Tune labelled ``tune``)."""
    phases: list[tuple[str, list[TrialRecord] | list[TuneTrial]]] = []
    if result.grid and result.grid.sequential:
        phases.append((GRID_SEQUENTIAL.key, result.grid.sequential.trials))
    if result.grid and result.grid.parallel:
        phases.append((GRID_PARALLEL.key, result.grid.parallel.trials))
    if result.tune:
        phases.append((TUNE.key, result.tune.trials))
    return phases


def _param_order(name: str) -> tuple[int, str]:
    seed_grid = ("n_estimators", "learning_rate", "max_depth")
    return (seed_grid.index(name) if name in seed_grid else len(seed_grid), name)


def trials_csv(result: Result) -> str:
    """All trials of every phase as CSV, one row each: every parameter has its own column (the
    seed grid's three first) and the params are also kept whole as JSON."""
    phases = all_trials(result)
    names = sorted({name for _, trials in phases for t in trials for name in t.params}, key=_param_order)
    column = {n: f"param.{n}" if n in FIXED_COLUMNS else n for n in names}
    # a classification's metrics (a regression's are among the fixed columns)
    scores = sorted({m for _, trials in phases for t in trials for m in t.metrics} - set(FIXED_COLUMNS))
    at = FIXED_COLUMNS.index("duration_s")
    columns = [*FIXED_COLUMNS[:2], *column.values(), *FIXED_COLUMNS[2:at], *scores, *FIXED_COLUMNS[at:]]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for phase, trials in phases:
        for t in trials:
            row = t.model_dump(mode="json", exclude={"reports", "curve"})
            row.update({m: v for m, v in t.metrics.items() if m in scores})
            row.update({column[k]: v for k, v in t.params.items()})
            row.update(phase=phase, params=json.dumps(t.params, sort_keys=True))
            writer.writerow(row)
    return out.getvalue()


# -- write and read -----------------------------------------------------------------------------


def write_bundle(result: Result, out_dir: Path) -> Path:
    """Write ``trials.csv`` then ``result.json`` (last, so its presence means finished).

    The run's own ``run.json`` and ``trials.jsonl`` are already there; an existing result is not.
    """
    if (out_dir / RESULT_FILE).exists():
        raise RayscaleError(f"--output {out_dir} already holds a result; choose another directory", 3)
    make_dir(out_dir)
    atomic_write(out_dir / TRIALS_FILE, trials_csv(result))
    path = out_dir / RESULT_FILE
    atomic_write(path, result.to_json())
    return path


def write_scale_bundle(result: ScaleResult, out_dir: Path) -> Path:
    """Write a scaling bundle's ``scale.json`` atomically; ``rayscale scale`` rewrites it as each
    node count finishes (a sweep cut short keeps its points). A new bundle needs a fresh directory."""
    path = out_dir / SCALE_FILE
    if not path.exists():
        check_output_dir(out_dir)
    make_dir(out_dir)
    atomic_write(path, result.to_json())
    return path


# -- reading version 1 ------------------------------------------------------------------------


def _v1_rounds(timing: dict[str, Any], duration: str) -> list[dict[str, Any]]:
    """Version 1 kept every round's wall but only the median round's trials: each round gets
    that round's busy time, longest trial and span."""
    trials = timing.get("trials", [])
    durations = [t[duration] for t in trials] or [0.0]
    span = max(t["end_ts"] for t in trials) - min(t["start_ts"] for t in trials) if trials else 0.0
    return [
        {"wall_s": w, "busy_s": sum(durations), "longest_s": max(durations), "span_s": span}
        for w in timing["walls_s"]
    ]


def _v1_timing(timing: dict[str, Any] | None, duration: str, drop: tuple[str, ...] = ()) -> Any:
    if timing is None:
        return None
    rounds = _v1_rounds(timing, duration)
    kept = {k: v for k, v in timing.items() if k not in ("walls_s", *drop)}
    return {**kept, "rounds": rounds}


def upgrade(document: dict[str, Any]) -> dict[str, Any]:
    """A version-1 document as version 2 (derived keys are recomputed on validation)."""
    doc = dict(document, schema_version=SCHEMA_VERSION)
    if doc.get("kind") == "scale":
        points = []
        for p in doc.get("points", []):
            duration = "compute_s" if p.get("phase") == "tune" else "fit_s"
            point = _v1_timing(p, duration, drop=("efficiency_vs_bound",))
            point["parallel_efficiency"] = point.pop("efficiency")
            points.append(point)
        doc["points"] = points
        doc["fits"] = [{**f, "points": len(doc.get("node_counts", []))} for f in doc.get("fits", [])]
        return doc
    grid = doc.get("grid")
    if grid is not None:
        doc["grid"] = {
            **{k: v for k, v in grid.items() if k not in ("efficiency", "consistent")},
            "sequential": _v1_timing(grid.get("sequential"), "fit_s"),
            "parallel": _v1_timing(grid.get("parallel"), "fit_s", drop=("makespan_s",)),
        }
        if grid.get("parallel"):
            doc["grid"]["cpus_per_trial"] = grid["parallel"]["cpus_per_trial"]
    return doc


def load_result(path: Path) -> Result:
    """Read a run bundle's ``result.json`` (or the bundle directory) and validate it."""
    loaded = load_any(path)
    if not isinstance(loaded, Result):
        raise RayscaleError(f"{path} is a scaling bundle; use `rayscale report` on a run bundle")
    return loaded


def load_any(path: Path) -> Result | ScaleResult:
    """Read a run or scaling bundle (``result.json``, ``scale.json`` or their directory), of any
    schema version this rayscale reads."""
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
    version = document["schema_version"]
    if version not in READABLE_VERSIONS:
        raise RayscaleError(
            f"{path} has schema_version {version}; this rayscale reads "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    model: type[Result] | type[ScaleResult] = ScaleResult if document.get("kind") == "scale" else Result
    try:
        return model.model_validate(upgrade(document) if version == 1 else document)
    except (ValidationError, KeyError, TypeError) as exc:
        if not isinstance(exc, ValidationError):
            raise RayscaleError(f"{path} does not match the result schema ({exc})") from None
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RayscaleError(f"{path} does not match the result schema at {where}: {first['msg']}") from None


# -- a bundle its run never finished ----------------------------------------------------------


@dataclass(frozen=True)
class Partial:
    """What a bundle without result.json holds."""

    path: Path
    manifest: dict[str, Any]
    trials: dict[str, int]  # phase → trials recorded
    torn_lines: int  # a line cut short by a crash mid-write is skipped, not fatal


def read_partial(out_dir: Path) -> Partial:
    """Read a bundle whose run never wrote result.json (crashed, killed or still running)."""
    manifest_path = out_dir / MANIFEST_FILE
    if (out_dir / RESULT_FILE).exists() or not manifest_path.is_file():
        raise RayscaleError(f"{out_dir} is not a partial rayscale bundle")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RayscaleError(f"{manifest_path} is not valid JSON") from None
    counts: Counter[str] = Counter()
    torn = 0
    journal = out_dir / JOURNAL_FILE
    if journal.is_file():
        for line in journal.read_text(encoding="utf-8").splitlines():
            try:
                counts[json.loads(line)["phase"]] += 1
            except (json.JSONDecodeError, KeyError, TypeError):
                torn += 1
    return Partial(out_dir, manifest, dict(counts), torn)
