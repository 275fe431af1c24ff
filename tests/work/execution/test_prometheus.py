"""Metrics: exposition and push behaviour, then every dashboard query against a real Prometheus.

The integration test starts Debian's ``prometheus`` and ``prometheus-pushgateway`` on free
loopback ports (installed by .ci/run). Outside CI it skips, with the reason, only when those
binaries are absent; in CI (``CI`` set) their absence is a failure.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from factories import trial  # tests/factories.py
from promstack import QUERIES, RULES, PromStack, binary, free_port  # tests/promstack.py
from rayscale.errors import RayscaleError
from rayscale.options.commands import redact_url, validate_gateway, validate_port
from rayscale.results.schema import TrialRecord
from rayscale.work.execution.prometheus import RunMetrics


def _trial(index: int, node: str = "10.0.0.1") -> TrialRecord:
    return trial(
        index,
        rmse=50.0 + index,
        end=0.2,
        params={"n_estimators": 10},
        predict_s=0.01,
        queue_s=0.03,
        node=node,
        node_id="n",
    )


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


# -- unit: exposition, validation, failure handling ---------------------------------------------


def test_served_exposition_merges_phases_under_one_header_each() -> None:
    metrics = RunMetrics("r1", "diabetes/seed")
    metrics.record_phase(
        "grid_sequential",
        trials=[_trial(0), _trial(1)],
        wall_s=0.5,
        lower_bound_s=0.4,
        cpus=1,
        nodes=1,
        best_rmse=50.0,
    )
    metrics.record_phase(
        "grid_parallel",
        trials=[_trial(0, "10.0.0.2")],
        wall_s=0.3,
        lower_bound_s=0.2,
        cpus=2,
        nodes=2,
        best_rmse=50.0,
        speedup=1.7,
        parallel_efficiency=0.66,
    )
    metrics.record_phase(  # a classification: no RMSE, its score by the selection metric
        "grid_parallel",
        trials=[],
        wall_s=0.3,
        lower_bound_s=0.2,
        cpus=2,
        nodes=4,
        best_rmse=None,
        best_score=0.97,
        metric="accuracy",
    )
    port = free_port()
    metrics.serve(port, address="127.0.0.1")
    try:
        text = _scrape(port)
    finally:
        metrics.close()
    assert text.count("# TYPE rayscale_trial_duration_seconds histogram") == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}
    duration = families["rayscale_trial_duration_seconds"]
    counts = {
        (s.labels["phase"], s.labels["node"]): s.value for s in duration.samples if s.name.endswith("_count")
    }
    assert counts == {("grid_sequential", "10.0.0.1"): 2, ("grid_parallel", "10.0.0.2"): 1}
    buckets = sorted(float(s.labels["le"]) for s in duration.samples if s.name.endswith("_bucket"))
    assert buckets[0] == 0.01 and 3600 in buckets  # 10 ms to 1 h
    speedup = families["rayscale_speedup"].samples
    assert [(s.labels["phase"], s.labels["nodes"], s.labels["cpus"], s.value) for s in speedup] == [
        ("grid_parallel", "2", "2", 1.7)
    ]
    trials = {
        (s.labels["phase"], s.labels["status"]): s.value
        for s in families["rayscale_trials"].samples
        if s.name == "rayscale_trials_total"
    }
    assert trials == {("grid_sequential", "ok"): 2, ("grid_parallel", "ok"): 1}
    scores = {
        (s.labels["nodes"], s.labels["metric"]): s.value for s in families["rayscale_best_score"].samples
    }
    assert scores == {("1", "rmse"): 50.0, ("2", "rmse"): 50.0, ("4", "accuracy"): 0.97}
    assert {s.labels["nodes"] for s in families["rayscale_best_rmse"].samples} == {"1", "2"}
    for name in (
        "rayscale_phase_wall_seconds",
        "rayscale_phase_lower_bound_seconds",
        "rayscale_parallel_efficiency",
        "rayscale_best_rmse",
        "rayscale_cluster_cpus",
        "rayscale_cluster_nodes",
        "rayscale_trial_queue_seconds",
    ):
        assert name in families, name
    assert "rayscale_last_success_timestamp_seconds" not in {
        s.name for f in families.values() for s in f.samples
    }  # only set when a run succeeds


def test_unreachable_gateway_warns_once_and_the_run_goes_on() -> None:
    warnings: list[str] = []
    port = free_port()  # nothing listens there
    metrics = RunMetrics("r1", "w", push_gateway=f"http://user:secret@127.0.0.1:{port}", warn=warnings.append)
    metrics.record_phase("tune", trials=[], wall_s=1.0, lower_bound_s=0.5, cpus=2, nodes=1, best_rmse=1.0)
    assert metrics.push_phase("tune") is False
    assert metrics.push_phase("tune") is False
    metrics.succeeded()
    assert len(warnings) == 1 and "failed" in warnings[0]
    assert "secret" not in warnings[0] and "***@127.0.0.1" in warnings[0]


def test_strict_metrics_turns_a_failed_push_into_exit_5() -> None:
    metrics = RunMetrics("r1", "w", push_gateway=f"http://127.0.0.1:{free_port()}", strict=True)
    metrics.record_phase("tune", trials=[], wall_s=1.0, lower_bound_s=0.5, cpus=2, nodes=1, best_rmse=1.0)
    with pytest.raises(RayscaleError) as info:
        metrics.push_phase("tune")
    assert info.value.exit_code == 5


def test_a_taken_metrics_port_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(RayscaleError, match=f"--metrics-port {port} cannot be served"):
            RunMetrics("r1", "w").serve(port, address="127.0.0.1")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pw@gw:9091", "http://***@gw:9091"),
        ("https://token@gw/path", "https://***@gw/path"),
        ("http://gw:9091", "http://gw:9091"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize("bad", ["gw:9091", "ftp://gw", "http://", "http://gw:99999", "http://gw:port"])
def test_malformed_gateway_urls(bad: str) -> None:
    with pytest.raises(RayscaleError, match="is not an http"):
        validate_gateway(bad)


def test_port_range() -> None:
    assert validate_port(9100) == 9100
    with pytest.raises(RayscaleError, match="between 1 and 65535"):
        validate_port(70000)


# -- integration: real Prometheus and Pushgateway ------------------------------------------------


def test_rules_load_with_promtool() -> None:
    promtool = binary("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed; .ci/run installs the Debian prometheus package")
        pytest.skip("promtool not found (it ships with the Debian prometheus package)")
    out = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 3 rules found" in out.stdout


def _substitute(expr: str, run_id: str) -> str:
    return (
        expr.replace("$run_id", run_id)
        .replace("$workload", ".*")
        .replace("$phase", ".*")
        .replace("$cluster", ".*")
    )


@pytest.mark.slow
def test_every_dashboard_query_returns_data_for_a_real_run(prom_stack: PromStack, tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("product:\n  n_estimators: [20, 40]\n  max_depth: [2, 3]\n")
    space = tmp_path / "space.yaml"
    space.write_text("space:\n  learning_rate: [0.05, 0.1]\n  max_depth: [2, 3]\n")
    out = tmp_path / "bundle"
    command = [
        sys.executable,
        "-m",
        "rayscale",
        "run",
        "--grid",
        str(grid),
        "--space",
        str(space),
        "--repeats",
        "1",
        "--max-rounds",
        "60",
        "--grace-period",
        "20",
        "--report-every",
        "10",
        "--output",
        str(out),
        "--metrics-port",
        str(prom_stack.metrics_port),
        "--ray-metrics-port",
        str(prom_stack.ray_metrics_port),
        "--push-gateway",
        prom_stack.gateway_url,
    ]
    started = time.time()
    # Ray reports its own metrics (ray_resources, …) every 10 s by default; this run lasts about that.
    env = {**os.environ, "RAY_metrics_report_interval_ms": "1000"}
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # Scrape /metrics during the run and check the exposition.
    live = ""
    deadline = time.monotonic() + 120
    while "rayscale_trial_duration_seconds_bucket" not in live and run.poll() is None:
        assert time.monotonic() < deadline, "no rayscale metrics served during the run"
        try:
            live = _scrape(prom_stack.metrics_port)
        except OSError:
            time.sleep(0.2)
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr[-3000:]
    assert live, "the run ended before /metrics could be scraped"
    families = {f.name for f in text_string_to_metric_families(live)}
    assert {"rayscale_trial_duration_seconds", "rayscale_phase_wall_seconds", "rayscale_trials"} <= families
    run_id = json.loads((out / "result.json").read_text())["run_id"]
    assert f'run_id="{run_id}"' in live

    # Wait until Prometheus has scraped the final push (the success marker comes last).
    deadline = time.monotonic() + 60
    while not prom_stack.api("query", query=f'rayscale_last_success_timestamp_seconds{{run_id="{run_id}"}}')[
        "result"
    ]:
        assert time.monotonic() < deadline, "the run's pushed metrics never reached Prometheus"
        time.sleep(0.5)

    document = yaml.safe_load(QUERIES.read_text())
    # Panels that only `rayscale scale --kuberay` feeds are checked by tests/work/test_scale.py.
    exprs = [t["expr"] for panel in document["panels"] if "needs" not in panel for t in panel["targets"]]
    assert len(exprs) >= 14
    window = {"start": str(started - 5), "end": str(time.time()), "step": "1"}
    empty = []
    for expr in exprs:
        data = prom_stack.api("query_range", query=_substitute(expr, run_id), **window)
        if not data["result"]:
            empty.append(expr)
    assert not empty, "dashboard queries without data for the run:\n" + "\n".join(empty)
    # Prometheus loaded the alert rules (the same file promtool checks).
    groups = prom_stack.api("rules")["groups"]
    assert [g["name"] for g in groups] == ["rayscale"] and len(groups[0]["rules"]) == 3
