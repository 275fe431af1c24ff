"""The durable side of a run: what is on disk before the run has finished.

When work starts, the bundle gets ``run.json`` (a manifest: run id, options, status "running")
and ``trials.jsonl``, to which every finished trial is appended, one JSON object per line and
flushed at once. ``result.json`` is written last and atomically, so its presence means the run
completed. A run that crashes or is killed leaves its finished trials readable, and
``rayscale report`` marks such a bundle partial.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel

from rayscale.errors import RayscaleError
from rayscale.options.files import JOURNAL_FILE, MANIFEST_FILE, PHASES_DIR
from rayscale.results.bundle import atomic_write, utc_now
from rayscale.results.schema import SCHEMA_VERSION, Trial


class Journal:
    """Appends finished trials to ``trials.jsonl`` and keeps ``run.json`` up to date."""

    def __init__(self, out_dir: Path, manifest: dict[str, Any]) -> None:
        if (out_dir / MANIFEST_FILE).exists():  # never append to (or restart) another run's journal
            raise RayscaleError(f"--output {out_dir} already holds a run; choose another directory", 3)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir = out_dir
        self.manifest = {
            "schema_version": SCHEMA_VERSION,
            "status": "running",
            **manifest,
            "started_utc": utc_now(),
        }
        atomic_write(out_dir / MANIFEST_FILE, json.dumps(self.manifest, indent=2) + "\n")
        self._file: TextIO = (out_dir / JOURNAL_FILE).open("a", encoding="utf-8")

    @classmethod
    def reopen(cls, out_dir: Path) -> Journal:
        """Continue an interrupted run's journal (``rayscale run --resume``)."""
        journal = cls.__new__(cls)
        journal.out_dir = out_dir
        journal.manifest = json.loads((out_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
        path = out_dir / JOURNAL_FILE
        if path.exists() and path.read_bytes()[-1:] not in (b"", b"\n"):
            with path.open("a", encoding="utf-8") as torn:  # end a line a crash cut short
                torn.write("\n")
        journal._file = path.open("a", encoding="utf-8")
        resumes = [*journal.manifest.get("resumed_utc", []), utc_now()]
        journal._set(status="running", resumed_utc=resumes, error=None)
        return journal

    def saved_phases(self) -> dict[str, dict[str, Any]]:
        """The results of the phases the run finished, as saved by :meth:`phase_done`."""
        phases = {}
        for phase in self.manifest.get("phases_done", []):
            path = self.out_dir / PHASES_DIR / f"{phase}.json"
            if path.is_file():
                phases[phase] = json.loads(path.read_text(encoding="utf-8"))
        return phases

    def rows(self, phase: str) -> list[dict[str, Any]]:
        """Trials of ``phase`` in the journal (torn lines skipped), without the journal's own keys."""
        rows = []
        path = self.out_dir / JOURNAL_FILE
        for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.pop("phase", None) == phase:
                row.pop("round", None)
                rows.append(row)
        return rows

    def trial(self, phase: str, record: Trial, round_: int = 1) -> None:
        row = {"phase": phase, "round": round_, **record.model_dump(mode="json")}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def phase_done(self, phase: str, result: BaseModel | None = None) -> None:
        """Mark ``phase`` finished; its result is kept so that a resumed run need not redo it."""
        os.fsync(self._file.fileno())
        if result is not None:
            (self.out_dir / PHASES_DIR).mkdir(exist_ok=True)
            atomic_write(self.out_dir / PHASES_DIR / f"{phase}.json", result.model_dump_json())
        self._set(phases_done=[*self.manifest.get("phases_done", []), phase])

    def finish(self, status: str, error: str | None = None) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._set(status=status, finished_utc=utc_now(), **({"error": error} if error else {}))

    def _set(self, **changes: Any) -> None:
        self.manifest.update({k: v for k, v in changes.items() if v is not None})
        for key in [k for k, v in changes.items() if v is None]:
            self.manifest.pop(key, None)
        atomic_write(self.out_dir / MANIFEST_FILE, json.dumps(self.manifest, indent=2) + "\n")
