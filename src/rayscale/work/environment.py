"""What a result needs to be compared honestly: software versions, machine and commit."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any


def rayscale_version() -> str:
    """The installed rayscale's version (the package's metadata, one source: pyproject.toml)."""
    return metadata.version("rayscale")


_PACKAGES = {
    "ray": ("ray",),
    "scikit-learn": ("scikit-learn",),
    "xgboost": ("xgboost-cpu", "xgboost"),
    "numpy": ("numpy",),
    "pandas": ("pandas",),
}


def _version(distributions: tuple[str, ...]) -> str | None:
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, else whatever the platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(cwd: Path | None = None) -> str | None:
    """HEAD of the git checkout rayscale runs from (or ``cwd``), with ``-dirty`` when modified."""
    where = cwd or Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("RAYSCALE_GIT_COMMIT")
    return head + ("-dirty" if dirty else "") if head else None


def capture() -> dict[str, Any]:
    """The environment block of a result."""
    return {
        "rayscale": rayscale_version(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": {name: _version(dists) for name, dists in _PACKAGES.items()},
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "hostname": socket.gethostname(),
        "git_commit": git_commit(),
        "executable": sys.executable,
    }


def machine_state() -> dict[str, Any]:
    """What else the machine was doing: load averages, and the CPU frequency governor where
    readable (``powersave`` or a busy machine explains a noisy timing)."""
    state: dict[str, Any] = {"utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        state["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        state["loadavg"] = None
    try:
        state["cpu_governor"] = (
            Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").read_text().strip()
        )
    except OSError:
        state["cpu_governor"] = None
    return state
