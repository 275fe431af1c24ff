"""--max-wall: a run stops cleanly after its wall-clock budget, keeping what it finished."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rayscale.cli import app
from rayscale.errors import RayscaleError
from rayscale.limits import WallLimitReached, wall_limit
from rayscale.options import check_max_wall


def test_the_limit_interrupts_the_block_and_is_cleared_after() -> None:
    started = time.monotonic()
    with (
        pytest.raises(WallLimitReached, match=r"--max-wall 0.2s reached; stopped. kept here"),
        wall_limit(0.2, "kept here"),
    ):
        time.sleep(5)
    assert time.monotonic() - started < 2
    with wall_limit(0.5):
        pass
    time.sleep(0.7)  # the timer was cancelled on leaving the block: nothing fires later
    with wall_limit(None):
        time.sleep(0.01)


@pytest.mark.parametrize("bad", [0.0, -5.0])
def test_bad_limits(bad: float) -> None:
    with pytest.raises(RayscaleError, match="--max-wall must be a positive number of seconds"):
        check_max_wall(bad)


def test_a_run_past_its_max_wall_exits_3_and_keeps_its_journal(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["run", "--phases", "grid-seq", "--repeats", "100", "--max-wall", "3", "--output", str(out)],
    )
    assert result.exit_code == 3, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--max-wall 3s reached" in lines[0] and "--resume" in lines[0]
    assert "Traceback" not in result.output
    assert not (out / "result.json").exists()
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "failed"
    assert (out / "trials.jsonl").read_text().strip()  # the rounds that finished are kept
