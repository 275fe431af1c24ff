"""Prometheus metrics of a run: per-trial histograms and per-phase gauges, served and pushed.

Each phase has its own :class:`CollectorRegistry`. It is pushed to a Pushgateway (push-add) with the
grouping key ``job=rayscale, run_id, phase``, and the metrics carry the same ``run_id``/``phase``
labels so that served and pushed series are identical. ``--metrics-port`` serves the union of
every phase's registry (plus the run-level ones) on ``/metrics`` for the whole run. The run-level
success marker is pushed under ``job=rayscale, run_id`` when the run has succeeded.

Metrics never fail a run: an unreachable or failing gateway prints one warning and the run goes on
(unless ``strict``).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import Metric
from prometheus_client.exposition import basic_auth_handler, default_handler, pushadd_to_gateway
from prometheus_client.registry import Collector

from rayscale.errors import RayscaleError, first_line
from rayscale.options.commands import redact_url
from rayscale.results.schema import Trial

# 10 ms to 1 h, roughly ×2.5 apart.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 3600)
TRIAL_LABELS = ("run_id", "phase", "workload", "nodes", "cpus", "node")
PHASE_LABELS = ("run_id", "phase", "workload", "nodes", "cpus")
PUSH_TIMEOUT_S = 5.0


class _PhaseMetrics:
    """The metric objects of one phase, registered in that phase's own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.duration = Histogram(
            "rayscale_trial_duration_seconds",
            "Compute time of one trial (fit, or boosting for Tune).",
            TRIAL_LABELS,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.queue = Histogram(
            "rayscale_trial_queue_seconds",
            "Time from a trial's submission to its start.",
            TRIAL_LABELS,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.trials = Counter(
            "rayscale_trials",
            "Trials by outcome: ok, stopped_early (ASHA), retried (finished after a lost worker), failed.",
            (*PHASE_LABELS, "status"),
            registry=r,
        )
        self.wall = Gauge(
            "rayscale_phase_wall_seconds", "Wall time of the phase (median round).", PHASE_LABELS, registry=r
        )
        self.bound = Gauge(
            "rayscale_phase_lower_bound_seconds",
            "Makespan lower bound: max(sum of trial compute / trial slots, longest trial); for Tune the "
            "compute is boosting time and the slots the trials run at once; sequential: sum of fits.",
            PHASE_LABELS,
            registry=r,
        )
        self.speedup = Gauge(
            "rayscale_speedup", "Sequential wall / parallel wall (medians).", PHASE_LABELS, registry=r
        )
        self.efficiency = Gauge(
            "rayscale_parallel_efficiency",
            "Parallel efficiency: speedup / CPUs (Tune: sum of compute / (CPUs x wall)); 1.0 is ideal.",
            PHASE_LABELS,
            registry=r,
        )
        self.schedule = Gauge(
            "rayscale_schedule_efficiency",
            "Schedule efficiency: makespan lower bound / parallel wall (1.0: the best schedule).",
            PHASE_LABELS,
            registry=r,
        )
        self.breakdown = Gauge(
            "rayscale_speedup_factor",
            "Where the speedup went: factors (baseline, contention, granularity, schedule, dispatch) "
            "that multiply to the parallel efficiency.",
            (*PHASE_LABELS, "factor"),
            registry=r,
        )
        self.resize = Gauge(
            "rayscale_resize_seconds",
            "rayscale scale --kuberay: seconds from patching the worker replicas to each stage of the "
            "ramp: nodes_alive (Ray sees every node), first_trial (a trial starts on a node that joined).",
            (*PHASE_LABELS, "stage"),
            registry=r,
        )
        self.best = Gauge(
            "rayscale_best_rmse",
            "RMSE of the phase's best model on the hold-out set.",
            PHASE_LABELS,
            registry=r,
        )
        self.score = Gauge(
            "rayscale_best_score",
            "The phase's best model on the hold-out set, by the run's selection metric (label metric).",
            (*PHASE_LABELS, "metric"),
            registry=r,
        )
        self.cpus = Gauge(
            "rayscale_cluster_cpus", "CPUs the cluster offered to the phase.", PHASE_LABELS, registry=r
        )
        self.nodes = Gauge(
            "rayscale_cluster_nodes", "Alive Ray nodes during the phase.", PHASE_LABELS, registry=r
        )


class _Union(Collector):
    """Every registry of a run as one collector, for the /metrics endpoint.

    Phases register metrics of the same names, so families are merged by name: one HELP/TYPE
    header each, as the exposition format requires.
    """

    def __init__(self, registries: Callable[[], Iterable[CollectorRegistry]]) -> None:
        self._registries = registries

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for registry in self._registries():
            for family in registry.collect():
                if family.name not in merged:
                    merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                merged[family.name].samples.extend(family.samples)
        yield from merged.values()


@dataclass
class RunMetrics:
    """The metrics of one run, its /metrics endpoint and its pushes."""

    run_id: str
    workload: str
    push_gateway: str | None = None
    strict: bool = False
    warn: Callable[[str], None] = lambda line: None  # the run's observers' on_warning; work never prints
    phases: dict[str, _PhaseMetrics] = field(default_factory=dict)
    run_registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))
    _server: Any = None
    _warned: bool = False

    def __post_init__(self) -> None:
        self.last_success = Gauge(
            "rayscale_last_success_timestamp_seconds",
            "Unix time the last successful run finished.",
            ("run_id", "workload"),
            registry=self.run_registry,
        )
        self._lock = threading.Lock()

    # -- export ---------------------------------------------------------------------------
    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """Serve /metrics on ``port`` until :meth:`close`; a taken port is an error."""
        union = CollectorRegistry(auto_describe=False)
        union.register(_Union(lambda: [*(p.registry for p in list(self.phases.values())), self.run_registry]))
        try:
            self._server = start_http_server(port, addr=address, registry=union)
        except OSError as exc:
            raise RayscaleError(f"--metrics-port {port} cannot be served: {exc.strerror or exc}", 3) from None

    def close(self) -> None:
        if self._server is not None:
            server, _thread = self._server
            server.shutdown()
            server.server_close()
            self._server = None

    def _push(self, registry: CollectorRegistry, grouping: dict[str, str]) -> bool:
        if not self.push_gateway:
            return True
        parts = urlsplit(self.push_gateway)
        user, password = parts.username, parts.password
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else parts.netloc
        gateway = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

        def handler(
            url: str, method: str, timeout: float | None, headers: list, data: bytes
        ) -> Callable[[], None]:
            if user is not None:
                return basic_auth_handler(url, method, PUSH_TIMEOUT_S, headers, data, user, password or "")
            return default_handler(url, method, PUSH_TIMEOUT_S, headers, data)

        try:
            pushadd_to_gateway(
                gateway,
                job="rayscale",
                registry=registry,
                grouping_key=grouping,
                timeout=PUSH_TIMEOUT_S,
                handler=handler,
            )
            return True
        except Exception as exc:  # any network or HTTP failure: metrics never sink a run
            reason = first_line(exc, typed=True)
            if self.strict:
                raise RayscaleError(f"push to {redact_url(self.push_gateway)} failed: {reason}", 5) from None
            if not self._warned:
                self.warn(
                    f"warning: push to {redact_url(self.push_gateway)} failed ({reason}); "
                    "results are still saved"
                )
                self._warned = True
            return False

    def push_phase(self, phase: str) -> bool:
        return self._push(self.phases[phase].registry, {"run_id": self.run_id, "phase": phase})

    def push_all(self) -> None:
        """Push every phase recorded so far (used when a run fails part-way)."""
        for phase in list(self.phases):
            self.push_phase(phase)

    def succeeded(self, when: float | None = None) -> None:
        self.last_success.labels(self.run_id, self.workload).set(when or time.time())
        self._push(self.run_registry, {"run_id": self.run_id})

    # -- recording --------------------------------------------------------------------------
    def _phase(self, phase: str) -> _PhaseMetrics:
        with self._lock:
            return self.phases.setdefault(phase, _PhaseMetrics())

    def record_phase(
        self,
        phase: str,
        *,
        trials: Iterable[Trial],
        wall_s: float,
        lower_bound_s: float | None,
        cpus: int,
        nodes: int,
        best_rmse: float | None,
        best_score: float | None = None,  # None: the RMSE
        metric: str = "rmse",
        speedup: float | None = None,
        parallel_efficiency: float | None = None,
        schedule_efficiency: float | None = None,
        breakdown: dict[str, float] | None = None,
    ) -> None:
        m = self._phase(phase)
        base = {
            "run_id": self.run_id,
            "phase": phase,
            "workload": self.workload,
            "nodes": str(nodes),
            "cpus": str(cpus),
        }
        for t in trials:
            labels = {**base, "node": t.node}
            m.duration.labels(**labels).observe(t.duration_s)
            queue = getattr(t, "queue_s", None)
            if queue is not None:
                m.queue.labels(**labels).observe(queue)
            m.trials.labels(**base, status=t.state.value).inc()
        m.wall.labels(**base).set(wall_s)
        for gauge, value in (
            (m.bound, lower_bound_s),
            (m.speedup, speedup),
            (m.efficiency, parallel_efficiency),
            (m.schedule, schedule_efficiency),
        ):
            if value is not None:
                gauge.labels(**base).set(value)
        for factor, value in (breakdown or {}).items():
            m.breakdown.labels(**base, factor=factor).set(value)
        if best_rmse is not None:
            m.best.labels(**base).set(best_rmse)
        score = best_rmse if best_score is None else best_score
        if score is not None:
            m.score.labels(**base, metric=metric).set(score)
        m.cpus.labels(**base).set(cpus)
        m.nodes.labels(**base).set(nodes)

    def record_resize(self, nodes: int, cpus: int, alive_s: float, first_trial_s: float | None) -> None:
        """One resize's ramp, pushed at once under phase ``resize``."""
        m = self._phase("resize")
        base = (self.run_id, "resize", self.workload, str(nodes), str(cpus))
        m.resize.labels(*base, "nodes_alive").set(alive_s)
        if first_trial_s is not None:
            m.resize.labels(*base, "first_trial").set(first_trial_s)
        self.push_phase("resize")

    def record_failure(self, phase: str, cpus: int, nodes: int, trials: int = 0) -> None:
        """The run failed during ``phase``; ``trials`` of its trials failed (0 when the run failed
        otherwise: a lost head, an interrupt). The series exists either way, so the alert can read it."""
        m = self._phase(phase)
        m.trials.labels(self.run_id, phase, self.workload, str(nodes), str(cpus), "failed").inc(trials)


def workload_label(dataset: str, grid: str) -> str:
    """A short, label-safe name for what ran: dataset spec and grid (paths reduced to their name)."""

    def short(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.:-]", "_", text.rsplit("/", 1)[-1])

    return f"{short(dataset)}/{short(grid)}"
