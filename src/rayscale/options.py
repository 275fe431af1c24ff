"""What ``rayscale run`` takes, checked before any work; ``rayscale scale`` wraps the same options."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rayscale.errors import RayscaleError
from rayscale.tune import TuneOptions

PHASES = ("grid-seq", "grid-ray", "tune")
RAY_PHASES = ("grid-ray", "tune")


@dataclass
class RunOptions:
    """Everything ``rayscale run`` takes; the CLI fills it, tests and benches build it directly."""

    dataset: str = "diabetes"
    grid: str = "seed"
    seed: int = 42
    test_size: float = 0.2
    validation_size: float = 0.0  # share of the training rows selection is made on (0: none)
    repeats: int = 5
    cpus_per_trial: int = 1
    address: str | None = None
    output: Path | None = None
    phases: tuple[str, ...] = PHASES
    max_trials: int | None = None
    ray_metrics_port: int | None = None  # where an embedded Ray exports its own metrics
    metrics_port: int | None = None
    push_gateway: str | None = None
    strict_metrics: bool = False
    max_wall: float | None = None  # seconds after which the driver stops cleanly (--max-wall)
    tune: TuneOptions = field(default_factory=TuneOptions)
    command: list[str] = field(default_factory=lambda: list(sys.argv))

    @property
    def needs_ray(self) -> bool:
        return any(p in self.phases for p in RAY_PHASES)


def parse_phases(text: str, allowed: tuple[str, ...] = PHASES) -> tuple[str, ...]:
    """``grid-seq,grid-ray`` → a checked tuple in run order."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise RayscaleError(f"--phases is empty; choose from {', '.join(allowed)}")
    for name in names:
        if name not in PHASES:
            raise RayscaleError(f"unknown phase {name!r} in --phases; choose from {', '.join(allowed)}")
    return tuple(p for p in PHASES if p in names)


def validate(opts: RunOptions) -> None:
    """Everything about the options that can be checked before any work, cheapest first."""
    from rayscale.bundle import check_output_dir
    from rayscale.cluster import check_cpus_per_trial, check_reachable, validate_address
    from rayscale.limits import check_max_wall
    from rayscale.metrics import validate_gateway, validate_port
    from rayscale.tune import check_options

    if opts.repeats < 1:
        raise RayscaleError(f"--repeats must be at least 1, got {opts.repeats}")
    check_cpus_per_trial(opts.cpus_per_trial, math.inf)
    if opts.max_trials is not None and opts.max_trials < 1:
        raise RayscaleError(f"--max-trials must be at least 1, got {opts.max_trials}")
    if not 0.0 <= opts.validation_size < 1.0:
        raise RayscaleError(f"--validation-size must be at least 0 and below 1, got {opts.validation_size}")
    parse_phases(",".join(opts.phases))
    check_max_wall(opts.max_wall)
    validate_address(opts.address)
    validate_port(opts.metrics_port)
    validate_gateway(opts.push_gateway)
    if "tune" in opts.phases:
        check_options(opts.tune)
    if opts.output is not None:
        check_output_dir(opts.output)
    if opts.needs_ray:
        check_reachable(opts.address)


def from_stored(stored: dict[str, Any], run_dir: Path) -> RunOptions:
    """RunOptions back from run.json (the inverse of :func:`rayscale.bundle.stored_options`)."""
    fields = dict(stored)
    tune = TuneOptions(**fields.pop("tune"))
    fields.pop("num_cpus", None)  # written by rayscale 0.1, never used
    fields["phases"] = tuple(fields["phases"])
    fields["output"] = run_dir
    if fields.get("push_gateway") and "***@" in fields["push_gateway"]:
        fields["push_gateway"] = None  # its credentials were never stored; pushes stay off on resume
    return RunOptions(**fields, tune=tune)
