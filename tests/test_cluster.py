from __future__ import annotations

import pytest

from rayscale.errors import RayscaleError
from rayscale.options import validate_address


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

    from rayscale.runners import RayProcesses

    processes = RayProcesses.find()
    assert processes is not None
    return [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode() for pid in processes.pids]


@pytest.mark.parametrize("lean", [True, False])
def test_an_embedded_ray_starts_only_what_a_run_uses(lean: bool) -> None:
    import ray

    from rayscale.cluster import ray_session

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
