"""Every command's options, and the one place they are checked before any work.

``rayscale run`` takes :class:`RunOptions` (with its :class:`TuneOptions`), ``rayscale scale`` a
:class:`ScaleOptions` wrapping a RunOptions, ``rayscale predict`` a :class:`PredictOptions`. Each
has ``validate()``, built from the checks below, each written once. The phases are named in one
table, :data:`PHASES`: their key in bundles and metrics, their ``--phases`` option and their label.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from rayscale.errors import RayscaleError
from rayscale.options.files import MANIFEST_FILE, RESULT_FILE, SCALE_FILE
from rayscale.options.scoring import TASKS, direction
from rayscale.options.space import DEFAULT_SPACE, check_tune_model, validate_space

# -- the phases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseName:
    """The names of one phase, each for one audience."""

    key: str  # in bundles, the journal, predict and the metrics' ``phase`` label
    option: str  # in --phases
    label: str  # on the progress bar and in table titles
    group: str  # phases of one group interleave their rounds


GRID_SEQUENTIAL = PhaseName("grid_sequential", "grid-seq", "sequential grid", "grid")
GRID_PARALLEL = PhaseName("grid_parallel", "grid-ray", "Ray grid", "grid")
TUNE = PhaseName("tune", "tune", "Tune sweep (XGBoost)", "tune")
PHASES = (GRID_SEQUENTIAL, GRID_PARALLEL, TUNE)
RUN_PHASES = tuple(p.option for p in PHASES)
SCALE_PHASES = (GRID_PARALLEL.option, TUNE.option)  # the phases that run on a cluster


def parse_phases(text: str, allowed: tuple[str, ...] = RUN_PHASES) -> tuple[str, ...]:
    """``grid-seq,grid-ray`` → a checked tuple in run order, of the phases in ``allowed``."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise RayscaleError(f"--phases is empty; choose from {', '.join(allowed)}")
    for name in names:
        if name not in RUN_PHASES:
            raise RayscaleError(f"unknown phase {name!r} in --phases; choose from {', '.join(allowed)}")
        if name not in allowed:
            raise RayscaleError(f"--phases: this command runs {', '.join(allowed)}; not {name!r}")
    return tuple(p for p in allowed if p in names)


def parse_nodes(text: str, ranges: bool = False) -> tuple[int, ...]:
    """``1,2,4`` → (1, 2, 4): whole positive numbers, no duplicates. With ``ranges``, also
    ``1..1024``: every power of two from the first to the last."""
    if ranges and ".." in text:
        low, _, high = text.partition("..")
        first, last = parse_nodes(low), parse_nodes(high)
        if len(first) != 1 or len(last) != 1 or first[0] > last[0]:
            raise RayscaleError(f"--nodes {text!r}: a range is LOW..HIGH, e.g. 1..1024")
        powers, n = [], first[0]
        while n <= last[0]:
            powers.append(n)
            n *= 2
        return tuple(powers)
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise RayscaleError(f"--nodes {text!r} must be a comma list of node counts, e.g. 1,2,4")
    counts: list[int] = []
    for part in parts:
        try:
            value = int(part)
        except ValueError:
            raise RayscaleError(f"--nodes: {part!r} is not a whole number") from None
        if value < 1:
            raise RayscaleError(f"--nodes: node counts must be at least 1, got {value}")
        if value in counts:
            raise RayscaleError(f"--nodes: {value} is listed twice")
        counts.append(value)
    return tuple(sorted(counts))


# -- the checks the options share ---------------------------------------------------------------

_HOST_PORT = re.compile(r"^(?:ray://)?\[?[A-Za-z0-9_.:-]+?\]?:(\d{1,5})$")


def validate_address(address: str | None) -> str:
    """Return the normalised address ('' means start an embedded Ray) or raise a one-line error."""
    address = (address or "").strip()
    if address in ("", "local"):
        return ""
    if address == "auto":
        return address
    match = _HOST_PORT.match(address)
    if not match or not 0 < int(match.group(1)) < 65536:
        raise RayscaleError(
            f"--address {address!r} is not 'auto', 'host:port' or 'ray://host:port' "
            "(empty starts a local Ray)"
        )
    return address


def check_cpus_per_trial(cpus_per_trial: float, cpus: float, where: str = "the cluster's") -> None:
    """The one check that a trial fits: CPUs per trial at least 1 and at most what is offered."""
    if cpus_per_trial < 1:
        raise RayscaleError(f"--cpus-per-trial must be at least 1, got {cpus_per_trial:g}")
    if cpus_per_trial > cpus:
        raise RayscaleError(
            f"--cpus-per-trial {cpus_per_trial:g} is more than {where} {cpus:g} CPUs: "
            "no trial could ever be scheduled"
        )


def check_max_wall(seconds: float | None) -> None:
    if seconds is not None and not seconds > 0:
        raise RayscaleError(f"--max-wall must be a positive number of seconds, got {seconds:g}")


def check_at_least(option: str, value: float | None, minimum: float = 1) -> None:
    if value is not None and value < minimum:
        raise RayscaleError(f"{option} must be at least {minimum:g}, got {value:g}")


def check_positive(option: str, value: float | None, zero_ok: bool = False) -> None:
    """A finite number above 0 (or at least 0 with ``zero_ok``), when given."""
    if value is not None and (not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok)):
        raise RayscaleError(f"{option} must be a positive number, got {value:g}")


def redact_url(url: str) -> str:
    """The URL with any user:password replaced, for logs and result bundles."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def validate_gateway(url: str | None) -> str | None:
    """``http(s)://host[:port][/path]`` or None; anything else is a one-line error."""
    if url is None or url == "":
        return None
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise RayscaleError(f"--push-gateway {redact_url(url)!r} is not an http(s)://host[:port] URL")
    return url


def validate_port(port: int | None) -> int | None:
    if port is not None and not 0 < port < 65536:
        raise RayscaleError(f"--metrics-port must be between 1 and 65535, got {port}")
    return port


def check_output_dir(out_dir: Path) -> None:
    """Fail before any work if ``out_dir`` already holds a result or cannot be created/written.

    The nearest existing ancestor is probed by really creating (and removing) a directory in
    it: permission bits do not tell whether a path under ``/proc`` or a read-only mount works.
    """
    if any((out_dir / name).exists() for name in (RESULT_FILE, SCALE_FILE, MANIFEST_FILE)):
        raise RayscaleError(f"--output {out_dir} already holds a result; choose another directory", 3)
    if out_dir.exists() and not out_dir.is_dir():
        raise RayscaleError(f"--output {out_dir} exists and is not a directory", 3)
    probe = out_dir
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise RayscaleError(f"--output {out_dir} is not writable ({probe} does not allow writing)", 3)
    try:
        shutil.rmtree(tempfile.mkdtemp(prefix=".rayscale-probe-", dir=probe))
    except OSError as exc:
        raise RayscaleError(
            f"--output {out_dir} cannot be created ({probe}: {exc.strerror or type(exc).__name__})", 3
        ) from None


# -- rayscale run -------------------------------------------------------------------------------


@dataclass
class TuneOptions:
    """How the sweep runs. The defaults are the fast path; ``tune_defaults()`` is Tune's own."""

    model: str = "xgboost"  # xgboost, lightgbm or sklearn:CLASS (rayscale.options.space)
    space: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SPACE))
    samples: int | None = None  # None: grid over list values; N: random sampling of N configs
    max_rounds: int = 300
    scheduler: Literal["asha", "none"] = "asha"
    grace_period: int = 50
    reduction_factor: int = 3
    report_every: int = 25
    cpus_per_trial: int = 1
    max_concurrent: int | None = None  # None: cluster CPUs // cpus_per_trial
    reuse_actors: bool = True
    checkpoint: bool = False
    loggers: bool = False
    max_failures: int = 2
    storage: str | None = None  # None: <bundle>/tune
    seed: int = 42
    metric: str = "rmse"  # what ASHA and the best go by: a task metric, val_ prefixed on validation
    mode: Literal["min", "max"] = "min"  # the metric's direction
    asha_replays: int = 200  # replays of an ASHA sweep for its outcome distribution (0: none)

    @classmethod
    def tune_defaults(cls, **overrides: Any) -> TuneOptions:
        """Tune as it comes: per-round reports, a checkpoint each report, loggers, fresh actors."""
        base = {"report_every": 1, "checkpoint": True, "loggers": True, "reuse_actors": False}
        return cls(**{**base, **overrides})

    def validate(self) -> None:
        """Everything about the sweep that can be checked before any cluster work."""
        validate_space(self.space, self.samples, check_tune_model(self.model))
        for name in ("max_rounds", "report_every", "grace_period", "cpus_per_trial", "samples"):
            check_at_least(f"--{name.replace('_', '-')}", getattr(self, name))
        check_at_least("--reduction-factor", self.reduction_factor, 2)
        check_at_least("--asha-replays", self.asha_replays, 0)
        if self.scheduler == "asha" and self.grace_period > self.max_rounds:
            raise RayscaleError(f"--grace-period {self.grace_period} exceeds --max-rounds {self.max_rounds}")


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
    phases: tuple[str, ...] = RUN_PHASES
    max_trials: int | None = None
    ray_metrics_port: int | None = None  # where an embedded Ray exports its own metrics
    metrics_port: int | None = None
    push_gateway: str | None = None
    strict_metrics: bool = False
    max_wall: float | None = None  # seconds after which the driver stops cleanly (--max-wall)
    task: str = "auto"  # auto, regression or classification (rayscale.options.scoring)
    metric: str | None = None  # the selection metric; None: the task's default
    cv: int | None = None  # score every config by K-fold cross-validation on the training split
    tune: TuneOptions = field(default_factory=TuneOptions)
    command: list[str] = field(default_factory=lambda: list(sys.argv))

    @property
    def needs_ray(self) -> bool:
        return any(p in self.phases for p in SCALE_PHASES)

    def check_work(self, allowed: tuple[str, ...]) -> None:
        """The checks every command that runs phases makes, cheapest first."""
        check_at_least("--repeats", self.repeats)
        check_cpus_per_trial(self.cpus_per_trial, math.inf)
        check_at_least("--max-trials", self.max_trials)
        if not 0.0 <= self.validation_size < 1.0:
            raise RayscaleError(
                f"--validation-size must be at least 0 and below 1, got {self.validation_size}"
            )
        parse_phases(",".join(self.phases), allowed)
        if self.task not in TASKS:
            raise RayscaleError(f"--task {self.task!r}: choose from {', '.join(TASKS)}")
        if self.metric is not None:
            direction(self.metric)  # a name some task knows; whether it fits is checked on the data
        check_at_least("--cv", self.cv, 2)
        if self.cv and self.validation_size:
            raise RayscaleError("--cv selects on folds of the training split; drop --validation-size")
        check_max_wall(self.max_wall)
        validate_address(self.address)
        validate_port(self.metrics_port)
        validate_gateway(self.push_gateway)
        if TUNE.option in self.phases:
            self.tune.validate()
        if self.output is not None:
            check_output_dir(self.output)

    def validate(self) -> None:
        self.check_work(RUN_PHASES)


def from_stored(stored: dict[str, Any], run_dir: Path) -> RunOptions:
    """RunOptions back from run.json (the inverse of :func:`rayscale.results.bundle.stored_options`)."""
    fields = dict(stored)
    tune = TuneOptions(**fields.pop("tune"))
    fields.pop("num_cpus", None)  # written by rayscale 0.1, never used
    fields["phases"] = tuple(fields["phases"])
    fields["output"] = run_dir
    if fields.get("push_gateway") and "***@" in fields["push_gateway"]:
        fields["push_gateway"] = None  # its credentials were never stored; pushes stay off on resume
    return RunOptions(**fields, tune=tune)


# -- rayscale scale -----------------------------------------------------------------------------


def parse_thresholds(specs: list[str]) -> dict[str, float]:
    """``["speedup:5%", "wall_s:10"]`` → {"speedup": 5.0, "wall_s": 10.0}."""
    thresholds = {}
    for spec in specs:
        name, sep, value = spec.partition(":")
        try:
            pct = float(value.strip().rstrip("%")) if sep else float("nan")
        except ValueError:
            pct = float("nan")
        if not name or pct != pct or pct < 0:
            raise RayscaleError(f"--fail {spec!r} is not FIGURE:PERCENT, e.g. speedup:5%")
        thresholds[name] = pct
    return thresholds


@dataclass(frozen=True)
class CompareOptions:
    a: Path  # the baseline bundle
    b: Path  # the candidate
    fail: tuple[str, ...] = ()  # FIGURE:PERCENT gates
    allow_different: bool = False  # compare bundles of different kinds, datasets or grids

    def thresholds(self) -> dict[str, float]:
        return parse_thresholds(list(self.fail))


@dataclass
class ScaleOptions:
    nodes: tuple[int, ...]
    cpus_per_node: int = 1
    local_cluster: bool = False
    kuberay: str | None = None
    namespace: str = ""  # empty: the pod's own namespace, else "default"
    wait_timeout_s: float = 600.0
    price_per_node_hour: float | None = None
    deadline_s: float | None = None
    isolate: bool = (
        False  # --local-cluster nodes in namespaces and CPU cgroups (rayscale.work.cluster.isolated)
    )
    cpu_limit: float | None = (
        None  # cores per isolated node; None: rayscale.work.cluster.isolated.default_cpu_limit
    )
    link_mbps: float | None = None  # each isolated node's link
    link_delay_ms: float | None = None
    run: RunOptions = field(default_factory=lambda: RunOptions(phases=(GRID_PARALLEL.option,)))
    command: list[str] = field(default_factory=lambda: list(sys.argv))

    @property
    def mode(self) -> Literal["local", "kuberay", "address"]:
        return "local" if self.local_cluster else "kuberay" if self.kuberay else "address"

    def validate(self) -> None:
        run = self.run
        if self.local_cluster and self.kuberay:
            raise RayscaleError("choose one of --local-cluster and --kuberay")
        if self.mode == "address" and not validate_address(run.address):
            raise RayscaleError(
                "rayscale scale needs --local-cluster, --kuberay NAME, or --address of a cluster"
            )
        if self.local_cluster and run.address:
            raise RayscaleError("--local-cluster starts its own cluster; drop --address")
        check_at_least("--cpus-per-node", self.cpus_per_node)
        if self.local_cluster:
            check_cpus_per_trial(run.cpus_per_trial, self.cpus_per_node, "--cpus-per-node")
        run.check_work(SCALE_PHASES)
        if self.mode == "address" and TUNE.option in run.phases:
            raise RayscaleError(
                "the tune phase cannot be confined to a subset of nodes; use --local-cluster or --kuberay"
            )
        check_positive("--price-per-node-hour", self.price_per_node_hour)
        check_positive("--deadline", self.deadline_s)
        check_isolation_options(self)


# -- isolated nodes (rayscale.work.cluster.isolated) ---------------------------------------------

CFS_PERIOD_US = 10_000  # a short period: a throttled node waits at most one period for CPU
MIN_CPU_LIMIT = 0.1  # the kernel's smallest CFS quota is 1 ms: 0.1 core at a 10 ms period
HOST_SHARE = 0.8  # the default limits fill this share of the host's CPUs (the driver and host get the rest)
MAX_NODES = 254  # one address each in 198.18.0.1-254


def host_cpus() -> int:
    return len(os.sched_getaffinity(0))


def default_cpu_limit(max_nodes: int, cpus_per_node: int) -> float:
    """Cores per node so that the largest cluster fills ``HOST_SHARE`` of the host, in steps of
    0.05 and at most ``cpus_per_node``: 0.4 at 4 nodes and 0.2 at 8 on 2 cores."""
    share = math.floor(round(HOST_SHARE * host_cpus() / max_nodes * 20, 6)) / 20
    return min(float(cpus_per_node), share)


def check_isolation_options(opts: ScaleOptions) -> None:
    """The --isolate options (whether this machine can isolate is
    :mod:`rayscale.work.cluster.isolated_host`'s question)."""
    shaped = {
        "--cpu-limit": opts.cpu_limit,
        "--link-mbps": opts.link_mbps,
        "--link-delay-ms": opts.link_delay_ms,
    }
    if not opts.isolate:
        for option, value in shaped.items():
            if value is not None:
                raise RayscaleError(f"{option} shapes isolated nodes; add --isolate")
        return
    if not opts.local_cluster:
        raise RayscaleError("--isolate isolates the nodes of --local-cluster; add --local-cluster")
    check_positive("--link-mbps", opts.link_mbps)
    check_positive("--link-delay-ms", opts.link_delay_ms, zero_ok=True)
    if max(opts.nodes) > MAX_NODES:
        raise RayscaleError(f"--isolate runs at most {MAX_NODES} nodes, not {max(opts.nodes)}")
    limit = (
        opts.cpu_limit
        if opts.cpu_limit is not None
        else default_cpu_limit(max(opts.nodes), opts.cpus_per_node)
    )
    if not limit >= MIN_CPU_LIMIT:
        raise RayscaleError(
            f"--cpu-limit must be at least {MIN_CPU_LIMIT:g} core (the kernel's smallest quota at a "
            f"{CFS_PERIOD_US // 1000} ms period), got {limit:g}"
            + ("" if opts.cpu_limit is not None else f": {max(opts.nodes)} nodes on {host_cpus()} CPUs")
        )


# -- rayscale predict ---------------------------------------------------------------------------


@dataclass
class PredictOptions:
    bundle: Path
    nodes: tuple[int, ...] = tuple(2**k for k in range(11))  # 1..1024
    cpus_per_node: int | None = None  # None: as measured
    provision_s: float | None = None  # None: the bundle's measured resize, else 0
    bandwidth_mbps: float | None = None  # None: the data's transfer is not modelled
    price_per_node_hour: float | None = None
    deadline_s: float | None = None
    validate_points: bool = False  # predict every measured point from the smallest
    grid: str | None = None  # predict these configs instead, timed by the fitted cost model
    plot: Path | None = None  # None: predict.png in the bundle

    def validate(self) -> None:
        check_positive("--provision-s", self.provision_s, zero_ok=True)
        check_positive("--bandwidth-mbps", self.bandwidth_mbps)
        check_positive("--price-per-node-hour", self.price_per_node_hour)
        check_positive("--deadline", self.deadline_s)
        if self.grid is not None and self.validate_points:
            raise RayscaleError("--grid predicts other configs, --validate the measured ones: choose one")
        check_at_least("--cpus-per-node", self.cpus_per_node)
