"""The bad-input catalogue: each case exits non-zero with one line naming the problem, no
traceback, nothing created, and an earlier result bundle beside it left byte-for-byte untouched."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rayscale.cli import app
from rayscale.options.commands import RunOptions
from rayscale.work.execution.prometheus import RunMetrics
from rayscale.work.run import run_benchmark


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with an earlier, real result bundle and the bad input files."""
    root = tmp_path_factory.mktemp("bad-input")
    grid = root / "ok-grid.yaml"
    grid.write_text("configs:\n  - {n_estimators: 10, max_depth: 2}\n")
    run_benchmark(RunOptions(grid=str(grid), repeats=1, phases=("grid-seq",), output=root / "earlier"))
    files = {
        "malformed.yaml": "configs: [\n",
        "empty.yaml": "",
        "typed.yaml": "configs: {n_estimators: 10}\n",
        "unknown-param.yaml": "configs:\n  - {n_trees: 10}\n",
        "zero-trees.yaml": "configs:\n  - {n_estimators: 0}\n",
        "zero-rate.yaml": "configs:\n  - {learning_rate: 0}\n",
        "string-depth.yaml": "configs:\n  - {max_depth: deep}\n",
        "empty.csv": "",
        "no-target.csv": "a,b\n1,2\n3,4\n",
        "text-target.csv": "a,price\n1,cheap\n2,3\n3,4\n4,5\n5,6\n6,7\n",
        "nan.csv": "a,price\n1,2\n,3\n4,5\n6,7\n8,9\n",
        "not-a-bundle.json": "{}",
        "mixed-space.yaml": "space:\n  max_depth: [3, '5']\n",
        "word-space.yaml": "space:\n  learning_rate: [fast]\n",
        "nan-target.csv": "a,price\n1,2\n2,\n3,4\n4,5\n5,6\n",
        "file": "x",
        "no-such-estimator.yaml": "estimator: sklearn.ensemble.NoSuchForest\nconfigs:\n  - {max_depth: 5}\n",
        "not-an-estimator.yaml": "estimator: pathlib.Path\nconfigs:\n  - {a: 1}\n",
        "forest-param.yaml": (
            "estimator: sklearn.ensemble.RandomForestClassifier\nconfigs:\n  - {learning_rate: 0.1}\n"
        ),
    }
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


CASES = [
    # (id, argv with {root} and {port} placeholders, exit code, fragment of the one error line)
    ("grid-malformed-yaml", ["run", "--grid", "{root}/malformed.yaml"], 2, "is not valid YAML at line"),
    ("grid-empty", ["run", "--grid", "{root}/empty.yaml"], 2, "is empty"),
    ("grid-wrong-type", ["run", "--grid", "{root}/typed.yaml"], 2, "'configs' must be a list"),
    (
        "grid-unknown-parameter",
        ["run", "--grid", "{root}/unknown-param.yaml"],
        2,
        "unknown GradientBoostingRegressor parameter 'n_trees'",
    ),
    (
        "grid-n-estimators-zero",
        ["run", "--grid", "{root}/zero-trees.yaml"],
        2,
        "n_estimators must be positive",
    ),
    (
        "grid-learning-rate-zero",
        ["run", "--grid", "{root}/zero-rate.yaml"],
        2,
        "learning_rate must be greater than 0",
    ),
    (
        "grid-wrong-value-type",
        ["run", "--grid", "{root}/string-depth.yaml"],
        2,
        "max_depth must be a positive whole number",
    ),
    ("grid-missing", ["run", "--grid", "{root}/nope.yaml"], 2, "grid file not found"),
    ("dataset-unknown", ["run", "--dataset", "mnist"], 2, "unknown dataset 'mnist'"),
    ("csv-missing", ["run", "--dataset", "csv:{root}/missing.csv:price"], 2, "CSV file not found"),
    ("csv-empty", ["run", "--dataset", "csv:{root}/empty.csv:price"], 2, "is empty"),
    ("csv-no-target", ["run", "--dataset", "csv:{root}/no-target.csv:price"], 2, "has no column 'price'"),
    ("csv-nan", ["run", "--dataset", "csv:{root}/nan.csv:price"], 2, "missing values in column 'a'"),
    (
        "estimator-does-not-import",
        ["run", "--grid", "{root}/no-such-estimator.yaml"],
        2,
        "estimator 'sklearn.ensemble.NoSuchForest' does not import",
    ),
    (
        "not-an-estimator",
        ["run", "--grid", "{root}/not-an-estimator.yaml"],
        2,
        "is not a scikit-learn estimator",
    ),
    (
        "estimator-unknown-param",
        ["run", "--grid", "{root}/forest-param.yaml", "--dataset", "sklearn:iris", "--phases", "grid-seq"],
        2,
        "unknown RandomForestClassifier parameter 'learning_rate'; valid: bootstrap, ccp_alpha",
    ),
    ("metric-unknown", ["run", "--metric", "auc"], 2, "unknown metric 'auc'"),
    (
        "metric-wrong-task",
        ["run", "--metric", "accuracy", "--phases", "grid-seq"],
        2,
        "does not fit a regression",
    ),
    ("cv-below-2", ["run", "--cv", "1"], 2, "--cv must be at least 2"),
    (
        "cv-above-smallest-class",
        ["run", "--dataset", "sklearn:iris", "--cv", "50", "--phases", "grid-seq"],
        2,
        "more folds than the smallest class has training rows",
    ),
    (
        "regression-on-text",
        ["run", "--dataset", "csv:{root}/text-target.csv:price", "--task", "regression"],
        2,
        "the target must be numeric for --task regression; found 'cheap'",
    ),
    (
        "tune-model-unknown",
        ["run", "--tune-model", "catboost"],
        2,
        "choose xgboost, lightgbm or sklearn:CLASS",
    ),
    (
        "tune-model-without-space",
        ["run", "--phases", "tune", "--tune-model", "sklearn:sklearn.svm.SVR"],
        2,
        "no built-in search space for SVR; give --space FILE",
    ),
    (
        "roc-auc-on-three-classes",
        ["run", "--dataset", "sklearn:iris", "--phases", "grid-seq", "--metric", "roc_auc"],
        2,
        "--metric roc_auc needs two classes; sklearn:iris has 3",
    ),
    (
        "tune-model-no-probabilities",
        [
            "run",
            "--dataset",
            "sklearn:breast_cancer",
            "--phases",
            "tune",
            "--metric",
            "log_loss",
            "--tune-model",
            "sklearn:sklearn.linear_model.SGDClassifier",
        ],
        2,
        "needs class probabilities",
    ),
    ("test-size-zero", ["run", "--test-size", "0"], 2, "--test-size must be between 0 and 1"),
    ("test-size-above-one", ["run", "--test-size", "1.5"], 2, "--test-size must be between 0 and 1"),
    ("address-malformed", ["run", "--address", "http://head"], 2, "is not 'auto', 'host:port'"),
    ("address-unreachable", ["run", "--address", "127.0.0.1:{port}"], 3, "cannot reach Ray at 127.0.0.1:"),
    ("nodes-zero", ["scale", "--local-cluster", "--nodes", "0"], 2, "at least 1"),
    ("nodes-negative", ["scale", "--local-cluster", "--nodes", "1,-2"], 2, "at least 1"),
    ("nodes-duplicate", ["scale", "--local-cluster", "--nodes", "1,2,2"], 2, "listed twice"),
    ("nodes-not-numbers", ["scale", "--local-cluster", "--nodes", "one,two"], 2, "not a whole number"),
    ("output-unwritable", ["run", "--output", "{root}/file/sub"], 3, "is not writable"),
    ("output-holds-a-result", ["run", "--output", "{root}/earlier"], 3, "already holds a result"),
    (
        "push-gateway-malformed",
        ["run", "--push-gateway", "ftp://gw:21"],
        2,
        "is not an http(s)://host[:port] URL",
    ),
    ("metrics-port-out-of-range", ["run", "--metrics-port", "70000"], 2, "between 1 and 65535"),
    ("max-trials-exceeded", ["run", "--max-trials", "5"], 2, "20 configs, more than --max-trials 5"),
    ("repeats-zero", ["run", "--repeats", "0"], 2, "--repeats must be at least 1"),
    ("report-not-a-bundle", ["report", "{root}/not-a-bundle.json"], 2, "not a rayscale result"),
    (
        "resume-not-a-bundle",
        ["run", "--resume", "{root}/ok-grid.yaml"],
        2,
        "is not a partial rayscale bundle",
    ),
    ("output-cannot-be-created", ["run", "--output", "/proc/rayscale-x"], 3, "cannot be created"),
    (
        "space-mixed-types",
        ["run", "--phases", "tune", "--space", "{root}/mixed-space.yaml"],
        2,
        "'max_depth' takes numbers; got '5'",
    ),
    (
        "space-value-xgboost-cannot-parse",
        ["run", "--phases", "tune", "--space", "{root}/word-space.yaml"],
        2,
        "'learning_rate' takes numbers; got 'fast'",
    ),
    (
        "csv-target-missing-values",
        ["run", "--dataset", "csv:{root}/nan-target.csv:price"],
        2,
        "missing values in column 'price' (1 row); drop or impute them first",
    ),
    ("resume-a-finished-run", ["run", "--resume", "{root}/earlier"], 2, "the run already finished"),
]


@pytest.mark.parametrize(("argv", "code", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(workspace: Path, argv: list[str], code: int, fragment: str) -> None:
    before = _digest(workspace)
    port = _free_port()
    args = [a.format(root=workspace, port=port) for a in argv]
    if args[0] in ("run", "scale") and "--output" not in args:
        args += ["--output", str(workspace / "new")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    assert _digest(workspace) == before  # nothing written, nothing earlier touched


def test_the_catalogue_has_at_least_25_cases() -> None:
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.slow
def test_cpus_per_trial_above_the_cluster_fails_fast(tmp_path: Path) -> None:
    started = time.monotonic()
    result = CliRunner().invoke(app, ["run", "--cpus-per-trial", "3", "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "more than the cluster's 2 CPUs" in result.stderr
    assert time.monotonic() - started < 60  # connect and refuse; nothing hangs waiting for 3 CPUs


def test_a_slow_gateway_is_bounded_and_credentials_never_show(tmp_path: Path) -> None:
    """A Pushgateway that accepts connections and never answers: the push gives up after its
    timeout, one warning is printed (password redacted) and the run's results are saved."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True).start()
    warnings: list[str] = []
    metrics = RunMetrics("r", "w", push_gateway=f"http://bench:s3cret@127.0.0.1:{port}", warn=warnings.append)
    metrics.record_phase("tune", trials=[], wall_s=1.0, lower_bound_s=0.5, cpus=2, nodes=1, best_rmse=1.0)
    started = time.monotonic()
    assert metrics.push_phase("tune") is False
    assert time.monotonic() - started < 8
    server.close()
    assert len(warnings) == 1 and "s3cret" not in warnings[0] and "***@127.0.0.1" in warnings[0]


def test_credentials_are_redacted_in_the_bundle(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("configs:\n  - {n_estimators: 10}\n")
    out = tmp_path / "b"
    url = f"http://bench:s3cret@127.0.0.1:{_free_port()}"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--phases",
            "grid-seq",
            "--grid",
            str(grid),
            "--repeats",
            "1",
            f"--push-gateway={url}",
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output  # the gateway is down: one warning, results saved
    assert "warning: push to http://***@127.0.0.1" in result.stderr
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".csv"):
            assert "s3cret" not in path.read_text(), path.name
    assert "s3cret" not in result.output
