"""ASHA's answer as a distribution, validated: does the spread the replays of one sweep predict
cover what repeated real runs find?

``--runs`` identical ``rayscale run --phases tune`` (the default 32-config XGBoost space, 300
rounds, ASHA) on ``--dataset``, each in a fresh embedded Ray, one after another. Each run's bundle
carries its own outcome distribution (``tune.asha_outcomes``: 200 replays of its reports to the full
budget, arrivals jittered by its timing noise, start offsets, gaps and dispatch order). The checks:
its own best inside its range; every real run's best lies inside
each run's predicted range (min–max of its replays), and the share of real runs that found the
full-budget best lies inside the interval around the predicted share (a binomial 95 % interval
for ``--runs`` draws). The plot shows the replays' bests against the real runs'.

``--sweep small`` is the 8-config, 90-round, 2-slot sweep of ``tests/work/tune/test_outcomes.py`` instead: its
trials take tens of milliseconds, so when each one's worker started is much of what orders their
reports (results under ``-small``).

    python bench/asha.py [--runs 8] [--dataset diabetes] [--sweep default|small]
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from rich.console import Console

from _results import RESULTS, header, write  # bench/_results.py
from rayscale.options.commands import RunOptions, TuneOptions
from rayscale.results.stats import Stats
from rayscale.work.run import run_benchmark

SMALL = TuneOptions(
    space={"learning_rate": [0.05, 0.3], "max_depth": [2, 4], "subsample": [0.8, 1.0]},
    max_rounds=90,
    grace_period=10,
    reduction_factor=3,
    report_every=10,
)


def _binomial_interval(share: float, n: int) -> tuple[float, float]:
    """Where the share of ``n`` runs lands 95 % of the time when each finds the best with
    probability ``share`` (the exact binomial quantiles, as shares)."""
    pmf = [math.comb(n, k) * share**k * (1 - share) ** (n - k) for k in range(n + 1)]
    cdf, low, high = 0.0, 0, n
    for k, p in enumerate(pmf):
        cdf += p
        if cdf < 0.025:
            low = k + 1
        if cdf >= 0.975:
            high = k
            break
    return low / n, high / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--dataset", default="diabetes")
    parser.add_argument("--sweep", choices=("default", "small"), default="default")
    args = parser.parse_args()
    sweep = SMALL if args.sweep == "small" else TuneOptions()
    console = Console(width=140)
    report = header("asha")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            opts = RunOptions(
                dataset=args.dataset, phases=("tune",), repeats=1, tune=sweep, output=Path(tmp) / f"r{i}"
            )
            result, _ = run_benchmark(opts, console=Console(quiet=True))
            tune = result.tune
            assert tune is not None and tune.asha_outcomes is not None
            asha = tune.asha_outcomes
            runs.append(asha)
            console.log(
                f"run {i + 1}: best {asha.observed:.3f} (full-budget best {asha.full_budget_best:.3f}: "
                f"{'found' if asha.observed_found else 'missed'}); predicted found share "
                f"{asha.found_share:.0%}, range {min(asha.best):.3f}–{max(asha.best):.3f}"
            )
    observed = [a.observed for a in runs]
    found = sum(a.observed_found for a in runs) / len(runs)
    predicted = Stats([a.found_share for a in runs]).median
    low, high = _binomial_interval(predicted, len(runs))
    inside = [sum(min(a.best) <= o <= max(a.best) for o in observed) / len(observed) for a in runs]
    own = [min(a.best) <= a.observed <= max(a.best) for a in runs]
    inside_p5_p95 = [
        sum(a.best_quantiles["p5"] <= o <= a.best_quantiles["p95"] for o in observed) / len(observed)
        for a in runs
    ]
    report |= {
        "dataset": args.dataset,
        "sweep": args.sweep,
        "runs": [a.model_dump(mode="json") for a in runs],
        "observed_best": observed,
        "distinct_observed": sorted(set(observed)),
        "observed_found_share": found,
        "predicted_found_share_median": predicted,
        "predicted_found_share_interval": [low, high],
        "share_within_interval": low <= found <= high,
        "own_best_inside_own_range": own,
        "observed_inside_each_runs_range": inside,
        "observed_inside_each_runs_p5_p95": inside_p5_p95,
        "covered": min(inside) == 1.0,
    }
    stem = f"asha-{report['created_utc'][:10].replace('-', '')}-{report['environment']['hostname']}"
    stem += "-small" if args.sweep == "small" else ""
    plot = RESULTS / f"{stem}.png"
    _plot(runs, observed, plot)
    report["plot"] = plot.name
    console.print(
        f"real runs: bests {sorted(set(observed))}, found the full-budget best in {found:.0%}; "
        f"replays predict {predicted:.0%} (95 % of {len(runs)}-run shares in {low:.0%}–{high:.0%}: "
        f"{'within' if low <= found <= high else 'OUTSIDE'}); each run's own best inside its range: "
        f"{sum(own)}/{len(own)}; every real best inside every run's range: "
        f"{min(inside) == 1.0} (p5–p95: {Stats(inside_p5_p95).median:.0%} median)"
    )
    console.print(f"written {write(report, RESULTS / f'{stem}.json')}")


def _plot(runs: list, observed: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    ax.boxplot([a.best for a in runs], whis=(5, 95), showfliers=True)
    ax.scatter(range(1, len(runs) + 1), observed, color="crimson", zorder=3, label="the run's own best")
    ax.axhline(runs[0].full_budget_best, color="grey", linestyle="--", label="full-budget best")
    ax.set_xlabel("real run (each: 200 replays of its own reports)")
    ax.set_ylabel("best test score found")
    ax.set_title("ASHA's answer: replayed distribution against real runs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
