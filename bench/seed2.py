"""The second seed experiment on its own data: Tune + ASHA on XGBoost, baseline against tuned, on
Brett Lantz's medical-charges data (1,338 rows: age, sex, bmi, children, smoker, region → charges),
beside the seed document's own table (baseline RMSE 4804.75, R² 0.8589; tuned 4394.81, R² 0.8821).

The data is read from ``../shared/data/insurance.csv`` (or ``$RAYSCALE_INSURANCE_CSV``) and never copied
into the repository. ASHA's best varies from run to run (the arrival order of results differs), so the
sweep runs ``--runs`` times and every run is kept; the baseline is deterministic.

    python bench/seed2.py [--runs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from _results import header, write  # bench/_results.py
from rayscale.options.commands import RunOptions
from rayscale.results.stats import Stats
from rayscale.work.run import run_benchmark

DATA = Path(
    os.environ.get(
        "RAYSCALE_INSURANCE_CSV", Path(__file__).resolve().parents[2] / "shared" / "data" / "insurance.csv"
    )
)
SEED_TABLE = {"baseline": {"rmse": 4804.75, "r2": 0.8589}, "tuned": {"rmse": 4394.81, "r2": 0.8821}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not DATA.is_file():
        sys.exit(f"skipped: {DATA} is absent (set RAYSCALE_INSURANCE_CSV)")
    started = header("seed2")
    runs = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as scratch:
            opts = RunOptions(
                dataset=f"csv:{DATA}:charges", phases=("tune",), output=Path(scratch) / "b", repeats=1
            )
            result, _ = run_benchmark(opts)
        tune = result.tune
        assert tune is not None
        runs.append(
            {
                "run": i + 1,
                "baseline": {"rmse": tune.baseline.rmse, "r2": tune.baseline.r2},
                "tuned": {
                    "rmse": tune.best.rmse,
                    "r2": tune.best.r2,
                    "params": tune.best.params,
                    "rounds": tune.best.rounds,
                },
                "wall_s": tune.wall_s,
            }
        )
        Console().log(f"run {i + 1}: baseline {tune.baseline.rmse:.2f}, tuned {tune.best.rmse:.2f}")
    summary = {}
    for part in ("baseline", "tuned"):
        for metric in ("rmse", "r2"):
            values = Stats([r[part][metric] for r in runs])
            seed = SEED_TABLE[part][metric]
            summary[f"{part}.{metric}"] = {
                "seed": seed,
                "median": values.median,
                "min": values.min,
                "max": values.max,
                "difference_pct_of_median": 100 * (values.median - seed) / seed,
            }
    table = Table(title="The second seed on insurance.csv: rayscale against the seed's table")
    for column in ("figure", "seed", "rayscale median", "min–max over runs", "difference"):
        table.add_column(column, justify="right")
    for name, row in summary.items():
        digits = 2 if name.endswith("rmse") else 4
        table.add_row(
            name,
            f"{row['seed']:.{digits}f}",
            f"{row['median']:.{digits}f}",
            f"{row['min']:.{digits}f}–{row['max']:.{digits}f}",
            f"{row['difference_pct_of_median']:+.1f}%",
        )
    Console(width=120).print(table)
    data = {"file": DATA.name, "sha256": hashlib.sha256(DATA.read_bytes()).hexdigest()}
    print(f"written {write({**started, 'data': data, 'runs': runs, 'summary': summary})}")


if __name__ == "__main__":
    main()
