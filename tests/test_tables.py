"""rayscale.tables: what a forecast's table and its notes say, as a user reads them."""

from __future__ import annotations

from dataclasses import replace

from rich.console import Console

from rayscale.forecast import Forecast, ForecastCosts
from rayscale.predict import GridTrace, predict_grid
from rayscale.tables import print_forecast


def _trace(worker_speed: float) -> GridTrace:
    trace = GridTrace(
        durations=[4.0, 1.0], costs=[4.0, 1.0], gap_s=0.0, collect_s=0.1, warmup_s=1.0,
        cpus_per_trial=1.0, data_bytes=0,
    )  # fmt: skip
    return replace(trace, worker_speed=worker_speed)


def _printed(worker_speed: float) -> str:
    costs = ForecastCosts(cpus_per_node=1)
    points = predict_grid(_trace(worker_speed), [1, 2], costs)
    speeds = {"grid_parallel": worker_speed} if worker_speed != 1.0 else {}
    forecast = Forecast(
        validated=False, base={"grid_parallel": 1}, costs=costs, points=points, cheapest={},
        worker_speed=speeds,
    )  # fmt: skip
    console = Console(record=True, width=400)
    print_forecast(forecast, console, plot=None)
    return console.export_text()


def test_a_grid_wall_over_placements_is_shown_with_its_range_and_said_what_it_is() -> None:
    # Workers at half the head's time: the 4 s trial on a worker ends at 2.1, on the head at 4.1.
    text = _printed(0.5)
    assert "3.10s (2.10–4.10)" in text
    assert "the grid's wall is its mean (min–max) over where Ray places the first tasks" in text
    # Equal slots: one placement, so no range and no note.
    plain = _printed(1.0)
    assert "4.10s" in plain and "4.10s (" not in plain and "over where Ray places" not in plain
