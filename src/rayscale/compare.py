"""``rayscale compare A B``: figures of two bundles side by side, failing on regressions.

Works on run bundles (result.json) and scaling bundles (scale.json), e.g. two Ray versions,
machine types or chart settings. ``--fail speedup:5%`` exits non-zero when B's speedup is more
than 5 % worse than A's ("worse" follows each figure's direction).
"""

from __future__ import annotations

from dataclasses import dataclass

from rayscale.errors import RayscaleError
from rayscale.results import Result, ScaleResult

HIGHER_IS_BETTER = ("speedup", "efficiency")


@dataclass(frozen=True)
class Row:
    figure: str
    a: float | None
    b: float | None

    @property
    def change_pct(self) -> float | None:
        if self.a is None or self.b is None or self.a == 0:
            return None
        return 100.0 * (self.b - self.a) / abs(self.a)

    @property
    def higher_is_better(self) -> bool:
        return self.figure.split("@")[0].split(".")[-1] in HIGHER_IS_BETTER

    def regression_pct(self) -> float | None:
        """How much worse B is than A, in percent (negative: better)."""
        change = self.change_pct
        if change is None:
            return None
        return -change if self.higher_is_better else change


def figures(bundle: Result | ScaleResult) -> dict[str, float]:
    """The comparable figures of a bundle, by name."""
    out: dict[str, float] = {}
    if isinstance(bundle, ScaleResult):
        for p in bundle.points:
            out[f"{p.phase}.speedup@{p.nodes}"] = p.speedup
            out[f"{p.phase}.efficiency@{p.nodes}"] = p.efficiency
            out[f"{p.phase}.wall_s@{p.nodes}"] = p.wall_s
        curve = sorted((p for p in bundle.points if p.phase == "grid_parallel"), key=lambda p: p.nodes)
        if curve:  # the headline figures: the largest node count of the grid
            out["speedup"], out["efficiency"], out["wall_s"] = (
                curve[-1].speedup,
                curve[-1].efficiency,
                curve[-1].wall_s,
            )
        return out
    grid, tune = bundle.grid, bundle.tune
    if grid is not None:
        if grid.speedup is not None:
            out["speedup"] = grid.speedup
        if grid.efficiency is not None:
            out["efficiency"] = grid.efficiency
        if grid.parallel is not None:
            out["wall_s"] = grid.parallel.wall_s
        if grid.sequential is not None:
            out["sequential.wall_s"] = grid.sequential.wall_s
        out["grid.best_rmse"] = grid.best.rmse
    if tune is not None:
        out["tune.wall_s"] = tune.wall_s
        out["tune.overhead_s"] = tune.overhead_s
        out["tune.best_rmse"] = tune.best.rmse
        out["tune.efficiency"] = tune.compute_bound_s / tune.wall_s
    return out


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


def compare(
    a: Result | ScaleResult, b: Result | ScaleResult, thresholds: dict[str, float]
) -> tuple[list[Row], list[str]]:
    """Rows for every figure either bundle has, and the regressions past ``thresholds``."""
    fa, fb = figures(a), figures(b)
    rows = [Row(name, fa.get(name), fb.get(name)) for name in sorted(set(fa) | set(fb))]
    by_name = {r.figure: r for r in rows}
    failures = []
    for name, limit in thresholds.items():
        row = by_name.get(name)
        if row is None or row.a is None or row.b is None:
            known = ", ".join(sorted(set(fa) & set(fb)))
            raise RayscaleError(f"--fail {name}: not a figure both bundles have (choose from {known})")
        worse = row.regression_pct()
        if worse is not None and worse > limit:
            failures.append(f"{name} regressed {worse:.1f}% (limit {limit:g}%): {row.a:.4g} → {row.b:.4g}")
    return rows, failures
