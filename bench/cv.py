"""How ``--cv`` changes what a cluster buys on the seed grid: more, smaller tasks.

The seed grid (20 configs of GradientBoostingRegressor on diabetes), ``--phases grid-seq,grid-ray``,
once as the seed ran it (20 tasks, one hold-out) and once with ``--cv 5`` (100 tasks: a task per
(config, fold), each fit on 4/5 of the training rows), each with ``--repeats`` interleaved timed
rounds per phase. Recorded for each: tasks, mean task seconds, sequential and parallel walls,
speedup with its paired interval, parallel and schedule efficiency, and the breakdown.

    python bench/cv.py [--repeats 5] [--folds 5]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console

from _results import header, write  # bench/_results.py
from rayscale.options.commands import RunOptions
from rayscale.work.run import run_benchmark


def _measure(cv: int | None, repeats: int, out: Path) -> dict:
    result, _ = run_benchmark(
        RunOptions(phases=("grid-seq", "grid-ray"), repeats=repeats, cv=cv, output=out),
        console=Console(quiet=True),
    )
    grid = result.grid
    assert grid is not None and grid.sequential is not None and grid.parallel is not None
    fits = [t.fit_s for t in grid.parallel.trials]
    return {
        "cv": cv,
        "tasks": len(grid.parallel.trials),
        "mean_task_s": sum(fits) / len(fits),
        "sequential_rounds_s": grid.sequential.rounds_s,
        "parallel_rounds_s": grid.parallel.rounds_s,
        "sequential_wall_s": grid.sequential.wall_s,
        "parallel_wall_s": grid.parallel.wall_s,
        "speedup": grid.speedup,
        "speedup_ci": grid.speedup_ci,
        "parallel_efficiency": grid.parallel_efficiency,
        "schedule_efficiency": grid.schedule_efficiency,
        "breakdown": grid.breakdown,
        "best": grid.best.model_dump(mode="json"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    console = Console(width=140)
    report = header("cv")
    with tempfile.TemporaryDirectory() as tmp:
        holdout = _measure(None, args.repeats, Path(tmp) / "holdout")
        folds = _measure(args.folds, args.repeats, Path(tmp) / "cv")
    for m in (holdout, folds):
        low, high = m["speedup_ci"]
        name = f"--cv {m['cv']}" if m["cv"] else "hold-out"
        console.print(
            f"{name}: {m['tasks']} tasks of {m['mean_task_s']:.3f}s, "
            f"sequential {m['sequential_wall_s']:.2f}s, parallel {m['parallel_wall_s']:.2f}s, speedup "
            f"{m['speedup']:.2f}x (95% CI {low:.2f}–{high:.2f}), efficiency {m['parallel_efficiency']:.2f}, "
            f"schedule efficiency {m['schedule_efficiency']:.2f}"
        )
    report |= {"grid": "seed", "dataset": "diabetes", "holdout": holdout, "cv": folds}
    console.print(f"written {write(report)}")


if __name__ == "__main__":
    main()
