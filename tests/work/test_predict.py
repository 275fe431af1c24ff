"""rayscale predict: exact schedules on hand-computed cases, the arithmetic of a forecast, ASHA
replayed against a real Tune run, and a real 2-node local cluster predicted from its 1-node point."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from factories import trial
from rayscale.cli import app
from rayscale.errors import RayscaleError
from rayscale.options.commands import parse_nodes
from rayscale.results.forecast import ForecastCosts
from rayscale.results.schema import Round, TuneReport, TuneTrial
from rayscale.work.sim.grid_forecast import GridTrace, predict_grid
from rayscale.work.sim.tune_replay import TuneTrace, ends_trial, predict_tune, replay_tune


def _trace(durations: list[float], warmup: float = 1.0) -> GridTrace:
    trials = [trial(i, start=0.0, end=d, cost=d, pid=100 + i) for i, d in enumerate(durations)]
    rounds = [
        Round(
            wall_s=max(durations) + 0.1,
            busy_s=sum(durations),
            longest_s=max(durations),
            span_s=max(durations),
        )
    ]
    return GridTrace.of(trials, rounds, warmup, 1.0, {"n_train": 1000, "n_test": 250, "n_features": 9})


def test_a_grid_wall_follows_the_runners_dispatch_the_longest_to_a_worker() -> None:
    # Worker slots at 0.5: the runner hands the 4 s task to the worker (ends at 2.0) and the 1 s
    # one to the head; one order, so no range.
    trace = replace(_trace([4.0, 1.0]), worker_speed=0.5)
    (two,) = predict_grid(trace, [2], ForecastCosts(cpus_per_node=1))
    assert two.predicted_wall_s == pytest.approx(2.1) and two.predicted_range is None
    (same,) = predict_grid(_trace([4.0, 1.0]), [2], ForecastCosts(cpus_per_node=1))
    assert same.predicted_wall_s == pytest.approx(4.1) and same.predicted_range is None


def test_a_grid_forecast_is_the_schedule_plus_what_surrounds_it() -> None:
    trace = _trace([4.0, 3.0, 2.0, 1.0])
    assert trace.durations == [4.0, 3.0, 2.0, 1.0] and trace.collect_s == pytest.approx(0.1)
    assert trace.data_bytes == 1250 * 10 * 8
    costs = ForecastCosts(
        cpus_per_node=1, provision_s=30.0, bandwidth_mbps=0.1, price_per_node_hour=3.6, deadline_s=40
    )
    one, two, four = predict_grid(trace, [1, 2, 4], costs)
    assert one.predicted_wall_s == pytest.approx(10.1)  # every trial one after another, + collect
    assert two.predicted_wall_s == pytest.approx(5.1)  # 4+1 | 3+2
    assert four.predicted_wall_s == pytest.approx(4.1)  # the longest
    transfer = 100_000 * 8 / 0.1e6  # 8 s at 0.1 Mbit/s, for each node the head sends the data to
    assert one.predicted_total_s == pytest.approx(1.0 + 10.1)  # no provisioning, no transfer on one node
    assert two.predicted_total_s == pytest.approx(30.0 + transfer + 1.0 + 5.1)
    assert four.predicted_total_s == pytest.approx(30.0 + 3 * transfer + 1.0 + 4.1)  # 3 copies, one link
    assert [p.predicted_warmup_s for p in (one, two, four)] == pytest.approx(
        [1.0, transfer + 1.0, 3 * transfer + 1.0]
    )
    assert two.speedup == pytest.approx(10.0 / 5.1)
    assert two.parallel_efficiency == pytest.approx(two.speedup / 2)
    assert four.schedule_efficiency == pytest.approx(4.0 / 4.1)  # bound: the longest trial
    assert two.cost == pytest.approx(2 * 3.6 * two.predicted_total_s / 3600)


def test_the_cost_model_prices_configs_that_were_not_measured() -> None:
    trace = _trace([4.0, 2.0])  # duration = 1.0 × cost exactly
    assert trace.seconds_per_cost() == pytest.approx(1.0)
    other = trace.with_costs([1.0, 6.0, 3.0])
    assert other.durations == pytest.approx([6.0, 3.0, 1.0])
    assert predict_grid(other, [2], ForecastCosts(cpus_per_node=1))[0].predicted_wall_s == pytest.approx(6.1)


def test_node_counts_parse_as_lists_or_power_of_two_ranges() -> None:
    assert parse_nodes("1..1024", ranges=True) == (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
    assert parse_nodes("3..12", ranges=True) == (3, 6, 12)
    assert parse_nodes("4,1,2", ranges=True) == (1, 2, 4)
    for bad in ("8..2", "0..4", "1..x", "a,b", ""):
        with pytest.raises(RayscaleError):
            parse_nodes(bad, ranges=True)


def _tune_trial(
    index: int, reports: list[tuple[int, float, float]], start: float = 0.0, pid: int = 1
) -> TuneTrial:
    rows = [TuneReport(rounds=r, rmse=m, compute_s=c, ts=start + c) for r, m, c in reports]
    last = rows[-1]
    return TuneTrial(
        index=index,
        trial_id=f"t_{index:05d}",
        params={"max_depth": index},
        rmse=last.rmse,
        r2=0.5,
        mae=1.0,
        node="n",
        node_id="n",
        pid=pid,
        start_ts=start,
        end_ts=start + last.compute_s,
        compute_s=last.compute_s,
        rounds=last.rounds,
        stopped_early=last.rounds < 40,
        reports=rows,
    )


def _tune_trace(trials: list[TuneTrial], scheduler: str = "asha") -> TuneTrace:
    options = {"tune": {"scheduler": scheduler, "max_rounds": 40, "grace_period": 10, "reduction_factor": 2}}
    return TuneTrace.of(trials, options, [])


def test_fifo_replay_on_one_slot_is_every_trial_to_the_end_one_after_another() -> None:
    trials = [_tune_trial(i, [(10, 5.0 - i, 1.0), (20, 4.0 - i, 2.0), (40, 3.0 - i, 4.0)]) for i in range(3)]
    one = replay_tune(_tune_trace(trials, "none"), 1)
    assert one.wall_s == pytest.approx(12.0) and one.rounds_run == 120 and one.stopped_early == 0
    assert one.best_score == 1.0 and one.best_trial == "t_00002"
    three = replay_tune(_tune_trace(trials, "none"), 3)
    assert three.wall_s == pytest.approx(4.0)
    # the second and third slots (a worker node's) at half the time: the head's trial is the last
    faster = replay_tune(_tune_trace(trials, "none"), 3, speeds=[1.0, 0.5, 0.5])
    assert faster.wall_s == pytest.approx(4.0) and faster.busy_s == pytest.approx(4.0 + 2.0 + 2.0)
    two = replay_tune(_tune_trace(trials, "none"), 2, speeds=[1.0, 0.5])
    assert two.wall_s == pytest.approx(4.0)  # slot 1 runs two trials of 2 s while slot 0 runs one of 4


def test_a_sweep_keeps_its_fixed_part_whose_spread_over_the_rounds_is_the_predictions_range() -> None:
    trials = [_tune_trial(i, [(10, 5.0 - i, 1.0), (20, 4.0 - i, 2.0), (40, 3.0 - i, 4.0)]) for i in range(3)]
    options = {"tune": {"scheduler": "none", "max_rounds": 40}}
    # fit() to the first trial and the tail took 10, 15 and 12 s in the three measured rounds
    rounds = [Round(wall_s=12.0 + fixed, busy_s=12.0, longest_s=4.0, span_s=12.0) for fixed in (10, 15, 12)]
    trace = TuneTrace.of(trials, options, rounds)
    assert trace.fixed_s == 12.0 and trace.fixed_range_s == (10.0, 15.0)
    costs = ForecastCosts(cpus_per_node=1)
    one = predict_tune(trace, 1, costs, alone_s=24.0)
    assert one.predicted_wall_s == pytest.approx(12.0 + 12.0)  # the trials one after another + the median
    assert one.predicted_range == pytest.approx((22.0, 27.0))
    three = predict_tune(trace, 3, costs, alone_s=24.0)
    assert three.predicted_wall_s == pytest.approx(4.0 + 12.0)
    assert three.predicted_range == pytest.approx((14.0, 19.0))
    # one round, or rounds alike: no range
    alike = TuneTrace.of(trials, options, rounds[:1])
    assert predict_tune(alike, 3, costs, alone_s=22.0).predicted_range is None


def test_asha_replay_stops_the_worse_trial_at_its_first_rung() -> None:
    good = _tune_trial(0, [(10, 1.0, 1.0), (20, 0.9, 2.0), (30, 0.8, 3.0), (40, 0.7, 4.0)])
    bad = _tune_trial(1, [(10, 9.0, 1.0), (20, 8.0, 2.0), (30, 7.0, 3.0), (40, 6.0, 4.0)])
    # One slot: the good trial reaches the 10-round rung first; the bad one arrives below its cutoff.
    replay = replay_tune(_tune_trace([good, bad]), 1)
    assert replay.stops == {"t_00000": 40, "t_00001": 10}
    assert replay.wall_s == pytest.approx(5.0) and replay.extrapolated == 0


def test_asha_replay_extrapolates_a_trial_run_further_than_it_was() -> None:
    # Measured, the second trial was stopped at 10 rounds; alone at its rung first, ASHA lets it go on.
    first = _tune_trial(0, [(10, 9.0, 1.0)])
    second = _tune_trial(1, [(10, 1.0, 1.0), (20, 0.9, 2.0), (30, 0.8, 3.0), (40, 0.7, 4.0)])
    replay = replay_tune(_tune_trace([first, second]), 1)
    assert replay.stops["t_00000"] == 40 and replay.extrapolated == 3


@pytest.mark.slow
def test_the_asha_replay_reproduces_a_real_tune_runs_stops(tmp_path: Path) -> None:
    from rayscale.work.cluster.session import ray_session
    from rayscale.work.data import load_dataset
    from rayscale.work.tune.sweep import TuneOptions, run_sweep

    space = {"learning_rate": [0.02, 0.1], "max_depth": [2, 3], "subsample": [0.8, 1.0]}
    opts = TuneOptions(space=space, max_rounds=120, grace_period=20, reduction_factor=3, report_every=10)
    with ray_session("") as cluster:
        result = run_sweep(load_dataset("diabetes"), opts, cluster.cpus, tmp_path)
    assert 0 < result.stopped_early < 8  # ASHA made decisions both ways
    options = {"tune": {"scheduler": "asha", "max_rounds": 120, "grace_period": 20, "reduction_factor": 3}}
    trace = TuneTrace.of(result.trials, options, [])
    assert _replay_in_order(trace) == {t.trial_id: t.rounds for t in result.trials}


@dataclass(frozen=True)
class _Handle:
    trial_id: str


def _replay_in_order(trace: TuneTrace) -> dict[str, int]:
    """ASHA's decisions when fed the recorded reports in the order they were sent (their
    timestamps), through the replay's own scheduler and feed: trial id -> rounds it ended at."""
    scheduler = trace.scheduler_object()
    for t in trace.trials:
        scheduler.on_trial_add(None, _Handle(t.trial_id))
    arrivals = sorted(
        ((r.ts or 0.0, t.index, r, t) for t in trace.trials for r in t.reports),
        key=lambda x: (x[0], x[1]),
    )
    ended: dict[str, int] = {}
    for _, _, r, t in arrivals:
        if t.trial_id not in ended and ends_trial(
            scheduler, trace, t.trial_id, r.rounds, r.value(trace.metric)
        ):
            ended[t.trial_id] = r.rounds
    return ended


def test_predict_bad_input_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "result.json").write_text("{}")
    cases = [
        ([str(tmp_path / "missing")], "no result bundle"),
        ([str(tmp_path)], "no schema_version"),
        ([str(tmp_path), "--nodes", "4..2"], "a range is LOW..HIGH"),
        ([str(tmp_path), "--deadline", "-1"], "--deadline must be a positive number"),
        ([str(tmp_path), "--cpus-per-node", "0"], "--cpus-per-node must be at least 1"),
        ([str(tmp_path), "--grid", "seed", "--validate"], "choose one"),
    ]
    for args, fragment in cases:
        result = CliRunner().invoke(app, ["predict", *args])
        assert result.exit_code != 0 and fragment in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.cluster
def test_a_real_two_node_cluster_is_predicted_from_its_one_node_point(tmp_path: Path) -> None:
    out = tmp_path / "scale"
    made = CliRunner().invoke(
        app,
        [
            "scale", "--nodes", "1,2", "--local-cluster", "--dataset", "friedman1:1500",
            "--phases", "grid-ray,tune", "--repeats", "2", "--output", str(out),
        ],
    )  # fmt: skip
    assert made.exit_code == 0, made.stderr
    run = CliRunner().invoke(app, ["predict", str(out), "--validate", "--json"])
    assert run.exit_code == 0, run.stderr
    document = json.loads(run.stdout)
    assert document["validated"] and document["base"] == {"grid_parallel": 1, "tune": 1}
    points = {(p["phase"], p["nodes"]): p for p in document["points"]}
    assert set(points) == {("grid_parallel", 1), ("grid_parallel", 2), ("tune", 1), ("tune", 2)}
    for p in points.values():
        assert p["measured_wall_s"] > 0 and p["predicted_wall_s"] > 0
        assert p["error_pct"] == pytest.approx(100 * (p["predicted_wall_s"] / p["measured_wall_s"] - 1))
    # Two nodes halve the grid's slots' work: the prediction sees it, and lands near what was measured
    # (the bench holds the 10 % target; on a shared 2-CPU machine a test allows its noise).
    assert points[("grid_parallel", 2)]["predicted_wall_s"] < points[("grid_parallel", 1)]["predicted_wall_s"]
    assert abs(points[("grid_parallel", 2)]["error_pct"]) < 30
    assert abs(points[("tune", 2)]["error_pct"]) < 30
    assert (out / "predict.png").stat().st_size > 10_000
    # Other configs on the same machine, timed by the cost model fitted to the measured trials.
    grid = tmp_path / "grid.yaml"
    grid.write_text("product:\n  n_estimators: [50, 100]\n  max_depth: [2, 4]\n")
    other = CliRunner().invoke(app, ["predict", str(out), "--grid", str(grid), "--nodes", "1,4", "--json"])
    assert other.exit_code == 0, other.stderr
    walls = {
        p["nodes"]: p["predicted_wall_s"]
        for p in json.loads(other.stdout)["points"]
        if p["phase"] == "grid_parallel"
    }
    assert set(walls) == {1, 4} and walls[4] < walls[1]
