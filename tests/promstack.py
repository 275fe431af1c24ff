"""A real Prometheus and Pushgateway on free loopback ports (Debian's packages, installed by .ci/run),
for the tests that check metrics end to end. Outside CI the fixture skips, with the reason, only
when the binaries are absent; in CI (``CI`` set) their absence is a failure."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "helm" / "rayscale" / "files" / "rayscale-rules.yaml"
QUERIES = ROOT / "deploy" / "grafana" / "queries.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binary(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/bin/{name}",) if os.access(p, os.X_OK)), None)


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stop_server(proc: subprocess.Popen) -> None:
    """Stop a server by its pid: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


class PromStack:
    def __init__(self, tmp: Path, prometheus: str, pushgateway: str) -> None:
        self.gateway_port, self.prom_port = free_port(), free_port()
        self.metrics_port, self.ray_metrics_port = free_port(), free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": "pushgateway",
                    "honor_labels": True,
                    "static_configs": [{"targets": [f"127.0.0.1:{self.gateway_port}"]}],
                },
                {
                    "job_name": "rayscale-live",
                    "static_configs": [{"targets": [f"127.0.0.1:{self.metrics_port}"]}],
                },
                {"job_name": "ray", "static_configs": [{"targets": [f"127.0.0.1:{self.ray_metrics_port}"]}]},
            ],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        logs = (tmp / "servers.log").open("w")
        self.gateway = subprocess.Popen(
            [
                pushgateway,
                f"--web.listen-address=127.0.0.1:{self.gateway_port}",
                # Debian's build persists to /var/lib/prometheus/pushgateway.data by default, which
                # would carry every earlier test run's groups into this one.
                f"--persistence.file={tmp / 'pushgateway.data'}",
            ],
            stdout=logs,
            stderr=logs,
        )
        self.prometheus = subprocess.Popen(
            [
                prometheus,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.prom_port}",
                "--log.level=warn",
            ],
            stdout=logs,
            stderr=logs,
        )
        wait_http(f"http://127.0.0.1:{self.gateway_port}/-/ready")
        wait_http(f"http://127.0.0.1:{self.prom_port}/-/ready")

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def api(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.prom_port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def stop(self) -> None:
        for proc in (self.prometheus, self.gateway):
            stop_server(proc)


def start_prom_stack(tmp_path: Path) -> Iterator[PromStack]:
    prometheus, pushgateway = binary("prometheus"), binary("prometheus-pushgateway")
    if not (prometheus and pushgateway):
        missing = "prometheus" if not prometheus else "prometheus-pushgateway"
        if os.environ.get("CI"):
            pytest.fail(f"{missing} is not installed; .ci/run installs the Debian packages")
        pytest.skip(f"{missing} binary not found (apt-get install prometheus prometheus-pushgateway)")
    stack = PromStack(tmp_path, prometheus, pushgateway)
    try:
        yield stack
    finally:
        stack.stop()
