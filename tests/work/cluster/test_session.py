from __future__ import annotations

from pathlib import Path

import pytest

from rayscale.errors import RayscaleError
from rayscale.options.commands import validate_address


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, ""),
        ("", ""),
        ("  ", ""),
        ("local", ""),
        ("auto", "auto"),
        ("10.0.0.5:6379", "10.0.0.5:6379"),
        ("ray://head-svc:10001", "ray://head-svc:10001"),
        ("raycluster-head-svc.default.svc:6379", "raycluster-head-svc.default.svc:6379"),
    ],
)
def test_valid_addresses(given: str | None, expected: str) -> None:
    assert validate_address(given) == expected


@pytest.mark.parametrize(
    "bad", ["localhost", "host:port", "http://head:8265", "head:0", "head:70000", "ray://"]
)
def test_malformed_addresses(bad: str) -> None:
    with pytest.raises(RayscaleError, match="is not 'auto', 'host:port'"):
        validate_address(bad)


def _session_commands() -> list[str]:
    """The command lines of the connected session's own processes (what RayProcesses counts)."""
    from pathlib import Path

    from rayscale.work.grid.runners import RayProcesses

    processes = RayProcesses.find()
    assert processes is not None
    return [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode() for pid in processes.pids]


@pytest.mark.parametrize("lean", [True, False])
def test_an_embedded_ray_starts_only_what_a_run_uses(lean: bool) -> None:
    import ray

    from rayscale.work.cluster.session import ray_session

    with ray_session("", num_cpus=1, lean=lean) as info:
        commands = _session_commands()
        assert ray.get(ray.remote(lambda: 41 + 1).remote()) == 42
    assert info.cpus == 1
    joined = "\n".join(commands)
    # Always: the GCS, the raylet and its two agents (counted in Ray's own CPU).
    for needed in ("gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent"):
        assert needed in joined
    # Lean leaves out the dashboard process, the autoscaler monitor and the log monitor;
    # Ray's own start has all three, which shows the check can tell them apart.
    for left_out in ("dashboard/dashboard.py", "autoscaler/_private/monitor.py", "log_monitor.py"):
        assert (left_out in joined) is not lean


@pytest.mark.slow
@pytest.mark.cluster
def test_a_run_on_a_shared_cluster_warns_of_the_other_jobs(tmp_path: Path, small_grid: Path) -> None:
    """Connected with --address, rayscale names the other drivers alive on the cluster in one line."""
    import subprocess
    import sys

    from ray.cluster_utils import Cluster
    from typer.testing import CliRunner

    from rayscale.cli import app

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    argv = ["run", "--address", cluster.address, "--grid", str(small_grid), "--phases", "grid-ray"]
    try:
        alone = CliRunner().invoke(app, [*argv, "--repeats", "1", "--output", str(tmp_path / "alone")])
        assert alone.exit_code == 0, alone.output
        assert "other Ray job" not in alone.stderr
        up = "print('up', flush=True)"
        code = f"import ray, time; ray.init(address={cluster.address!r}); {up}; time.sleep(90)"
        other = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            assert other.stdout is not None and other.stdout.readline().strip() == "up"
            shared = CliRunner().invoke(app, [*argv, "--repeats", "1", "--output", str(tmp_path / "shared")])
        finally:
            other.terminate()
            other.wait(timeout=30)
        assert shared.exit_code == 0, shared.output
        lines = [line for line in shared.stderr.splitlines() if "other Ray job" in line]
        assert len(lines) == 1 and lines[0].startswith("warning: 1 other Ray job(s) running"), shared.stderr
        assert f"pid {other.pid}" in lines[0] or "python" in lines[0], lines[0]
    finally:
        cluster.shutdown()
