from __future__ import annotations

import json
from pathlib import Path

import pytest

from rayscale.errors import RayscaleError
from rayscale.options.commands import RunOptions
from rayscale.options.files import RESULT_FILE, TRIALS_FILE
from rayscale.results.bundle import load_result, write_bundle
from rayscale.results.schema import SCHEMA_VERSION, Result
from rayscale.work.run import run_benchmark


@pytest.fixture
def bundle(tmp_path: Path, small_grid: Path) -> tuple[Result, Path]:
    """A real sequential-only run (no Ray needed): milliseconds on diabetes."""
    return run_benchmark(
        RunOptions(grid=str(small_grid), repeats=2, phases=("grid-seq",), output=tmp_path / "run")
    )


def test_schema_round_trip(bundle: tuple[Result, Path]) -> None:
    result, out = bundle
    loaded = load_result(out / RESULT_FILE)
    assert loaded == result
    assert load_result(out) == result  # the bundle directory works too
    raw = json.loads((out / RESULT_FILE).read_text())
    assert raw["schema_version"] == SCHEMA_VERSION
    assert raw["run_id"] == result.run_id
    for key in ("python", "packages", "cpu_model", "cpu_count", "hostname", "git_commit"):
        assert key in raw["environment"]
    trial = raw["grid"]["sequential"]["trials"][0]
    for key in ("params", "rmse", "r2", "mae", "fit_s", "node", "start_ts", "end_ts"):
        assert key in trial


def test_trials_csv_has_a_row_per_trial(bundle: tuple[Result, Path]) -> None:
    _, out = bundle
    lines = (out / TRIALS_FILE).read_text().splitlines()
    assert lines[0].startswith("phase,index,n_estimators")
    assert len(lines) == 1 + 4
    assert all(line.startswith("grid_sequential,") for line in lines[1:])


def test_a_bundle_is_never_overwritten(bundle: tuple[Result, Path]) -> None:
    result, out = bundle
    before = (out / RESULT_FILE).read_bytes()
    with pytest.raises(RayscaleError, match="already holds a result"):
        write_bundle(result, out)
    assert (out / RESULT_FILE).read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"run_id": "x"}', "no schema_version"),
        ('{"schema_version": 999}', "schema_version 999"),
        ('{"schema_version": 1, "run_id": 3}', "does not match the result schema"),
    ],
)
def test_load_rejects_what_is_not_a_result(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / RESULT_FILE
    path.write_text(content)
    with pytest.raises(RayscaleError, match=message):
        load_result(path)


def test_load_of_a_missing_bundle(tmp_path: Path) -> None:
    with pytest.raises(RayscaleError, match="no result bundle"):
        load_result(tmp_path)


def test_stored_options_redact_credentials_for_run_and_scale_alike() -> None:
    from rayscale.options.commands import ScaleOptions
    from rayscale.results.bundle import redacted_command, stored_options

    url = "http://user:s3cret@gw:9091"
    run = RunOptions(push_gateway=url, command=["rayscale", "run", f"--push-gateway={url}"])
    scale = ScaleOptions(nodes=(1, 2), run=run, command=["rayscale", "scale", "--push-gateway", url])
    for stored in (stored_options(run), stored_options(scale)):
        text = json.dumps(stored)
        assert "s3cret" not in text and "http://***@gw:9091" in text and "command" not in text
    assert "s3cret" not in " ".join(redacted_command(scale.command))


def test_trials_csv_gives_every_parameter_a_column(bundle: tuple[Result, Path]) -> None:
    _, out = bundle
    header = (out / TRIALS_FILE).read_text().splitlines()[0].split(",")
    assert header[:6] == ["phase", "index", "n_estimators", "learning_rate", "max_depth", "random_state"]
