"""rayscale.views.tables: what a forecast's table and its notes say, as a user reads them."""

from __future__ import annotations

from dataclasses import replace

from rich.console import Console

from rayscale.results.forecast import Forecast, ForecastCosts, ForecastPoint
from rayscale.views.tables import print_forecast
from rayscale.work.sim.grid_forecast import GridTrace, predict_grid


def _trace(worker_speed: float) -> GridTrace:
    trace = GridTrace(
        durations=[4.0, 1.0], costs=[4.0, 1.0], gap_s=0.0, collect_s=0.1, warmup_s=1.0,
        cpus_per_trial=1.0, data_bytes=0,
    )  # fmt: skip
    return replace(trace, worker_speed=worker_speed)


def _shown(forecast: Forecast) -> str:
    console = Console(record=True, width=400)
    print_forecast(forecast, console, plot=None)
    return console.export_text()


def _printed(worker_speed: float) -> str:
    costs = ForecastCosts(cpus_per_node=1)
    points = predict_grid(_trace(worker_speed), [1, 2], costs)
    speeds = {"grid_parallel": worker_speed} if worker_speed != 1.0 else {}
    return _shown(
        Forecast(
            validated=False, base={"grid_parallel": 1}, costs=costs, points=points, cheapest={},
            worker_speed=speeds,
        )
    )  # fmt: skip


def test_a_grid_wall_is_one_dispatch_order_and_shown_without_a_range() -> None:
    # Workers at half the head's time: the runner gives the 4 s trial to the worker (ends at 2.1,
    # the head's 1 s trial at 1.1): one order, so no range and no note about one.
    for speed in (0.5, 1.0):
        text = _printed(speed)
        assert "2.10s" in text if speed == 0.5 else "4.10s" in text
        assert "s (" not in text.split("Forecast")[-1].split("\n")[0] and "where Ray places" not in text


def _tune_point(low: float, high: float) -> ForecastPoint:
    return ForecastPoint(
        phase="tune", nodes=8, slots=8, predicted_wall_s=17.0, predicted_min_s=low, predicted_max_s=high,
        predicted_total_s=17.0, speedup=1.5, parallel_efficiency=0.19, schedule_efficiency=0.1, cost=None,
        rounds_run=3300, best_score=1.29, metric="rmse", stopped_early=20, extrapolated_reports=0,
    )  # fmt: skip


def test_a_sweeps_range_over_its_measured_rounds_is_shown_and_said_what_it_is() -> None:
    def shown(point: ForecastPoint) -> str:
        costs = ForecastCosts(cpus_per_node=1)
        return _shown(Forecast(validated=False, base={"tune": 1}, costs=costs, points=[point], cheapest={}))

    text = shown(_tune_point(15.7, 18.2))
    assert "17.00s (15.70–18.20)" in text
    assert "tune: the sweep's wall is its median (min–max) over the start-up and tail" in text
    assert "where Ray places" not in text
    plain = shown(_tune_point(17.0, 17.0))
    assert "17.00s (" not in plain and "start-up and tail" not in plain
