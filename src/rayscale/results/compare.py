"""``rayscale compare A B``: figures of two bundles side by side, and a significance-aware gate.

Works on run bundles (result.json) and scaling bundles (scale.json), e.g. two Ray versions,
machine types or chart settings. ``--fail speedup:5%`` fails only when B's speedup is more than
5 % worse than A's ("worse" follows each figure's direction) *and* the difference is significant
given both bundles' stored rounds (a bootstrap interval of the ratio of medians that excludes 1);
otherwise the row says "within noise". Quality figures (best RMSE) are deterministic: any
difference is real. Bundles of different kinds, datasets or grids are not compared unless asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rayscale.errors import RayscaleError
from rayscale.options.commands import GRID_PARALLEL, CompareOptions
from rayscale.options.scoring import direction
from rayscale.results.bundle import load_any
from rayscale.results.scaling import ScaleResult
from rayscale.results.schema import Result, lower_bound
from rayscale.results.stats import Stats, ratio_ci, significant

HIGHER_IS_BETTER = ("speedup", "parallel_efficiency", "schedule_efficiency")


@dataclass(frozen=True)
class Figure:
    """A figure's rounds (one value each); the figure itself is their median."""

    rounds: list[float]

    @property
    def value(self) -> float:
        return Stats(self.rounds).median


@dataclass(frozen=True)
class Row:
    figure: str
    a: float | None
    b: float | None
    a_rounds: list[float] = field(default_factory=list, repr=False)
    b_rounds: list[float] = field(default_factory=list, repr=False)

    @property
    def change_pct(self) -> float | None:
        if self.a is None or self.b is None or self.a == 0:
            return None
        return 100.0 * (self.b - self.a) / abs(self.a)

    @property
    def _name(self) -> str:
        return self.figure.split("@")[0].split(".")[-1]

    @property
    def higher_is_better(self) -> bool:
        name = self._name
        return name in HIGHER_IS_BETTER or (self.exact and direction(name.removeprefix("best_")) == "max")

    @property
    def exact(self) -> bool:
        """A best model's score: deterministic for a dataset, grid and seed, so any change is real."""
        return self._name.startswith("best_")

    def regression_pct(self) -> float | None:
        """How much worse B is than A, in percent (negative: better)."""
        change = self.change_pct
        if change is None:
            return None
        return -change if self.higher_is_better else change

    def significant(self) -> bool:
        """Whether A and B differ beyond their rounds' noise."""
        if self.a is None or self.b is None:
            return False
        if self.exact:
            return self.a != self.b
        if len(self.a_rounds) < 2 or len(self.b_rounds) < 2 or self.a == 0:
            return False  # one round has no spread to judge a difference by
        return significant(ratio_ci(self.a_rounds, self.b_rounds))

    @property
    def verdict(self) -> str:
        worse = self.regression_pct()
        if worse is None:
            return "—"
        if not self.significant():
            return "within noise"
        return "worse" if worse > 0 else "better" if worse < 0 else "same"


def _grid_figures(bundle: Result) -> dict[str, Figure]:
    out: dict[str, Figure] = {}
    grid, tune = bundle.grid, bundle.tune
    if grid is not None:
        seq, par = grid.sequential, grid.parallel
        if seq is not None and par is not None:
            n = min(len(seq.rounds), len(par.rounds))
            ratios = [s / p for s, p in zip(seq.rounds_s[:n], par.rounds_s[:n], strict=True)]
            out["speedup"] = Figure(ratios)
            out["parallel_efficiency"] = Figure([r / grid.cpus for r in ratios])
        if par is not None:
            out["wall_s"] = Figure(par.rounds_s)
            out["schedule_efficiency"] = Figure(
                [lower_bound(r.busy_s, r.longest_s, grid.slots) / r.wall_s for r in par.rounds]
            )
        if seq is not None:
            out["sequential.wall_s"] = Figure(seq.rounds_s)
        out[f"grid.best_{grid.metric}"] = Figure([grid.best_score])
    if tune is not None:
        out["tune.wall_s"] = Figure([tune.wall_s])
        out["tune.overhead_s"] = Figure([tune.overhead_s])
        out[f"tune.best_{tune.metric}"] = Figure([tune.best_score])
        out["tune.parallel_efficiency"] = Figure([tune.parallel_efficiency])
    return out


def _scale_figures(bundle: ScaleResult) -> dict[str, Figure]:
    out: dict[str, Figure] = {}
    for p in bundle.points:
        speedups = p.round_speedups
        out[f"{p.phase}.speedup@{p.nodes}"] = Figure(speedups)
        out[f"{p.phase}.parallel_efficiency@{p.nodes}"] = Figure([s / p.nodes for s in speedups])
        out[f"{p.phase}.wall_s@{p.nodes}"] = Figure(p.rounds_s)
    curve = sorted((p for p in bundle.points if p.phase == GRID_PARALLEL.key), key=lambda p: p.nodes)
    if curve:  # the headline figures: the largest node count of the grid
        top = curve[-1].nodes
        for name in ("speedup", "parallel_efficiency", "wall_s"):
            out[name] = out[f"{GRID_PARALLEL.key}.{name}@{top}"]
    return out


def figures(bundle: Result | ScaleResult) -> dict[str, float]:
    """The comparable figures of a bundle, by name."""
    return {name: f.value for name, f in _figures(bundle).items()}


def _figures(bundle: Result | ScaleResult) -> dict[str, Figure]:
    return _scale_figures(bundle) if isinstance(bundle, ScaleResult) else _grid_figures(bundle)


def _workload(bundle: Result | ScaleResult) -> tuple[str, str, str]:
    options = bundle.options.get("run", bundle.options)
    return bundle.kind, str(bundle.dataset.get("spec")), str(options.get("grid"))


def check_comparable(a: Result | ScaleResult, b: Result | ScaleResult) -> None:
    """Refuse to compare figures across different kinds, datasets or grids."""
    for what, x, y in zip(("kinds", "datasets", "grids"), _workload(a), _workload(b), strict=True):
        if x != y:
            raise RayscaleError(
                f"the bundles' {what} differ ({x} vs {y}): their figures do not measure the same thing; "
                "pass --allow-different to compare them anyway"
            )


def compare(
    a: Result | ScaleResult,
    b: Result | ScaleResult,
    thresholds: dict[str, float],
    allow_different: bool = False,
) -> tuple[list[Row], list[str]]:
    """Rows for every figure either bundle has, and the significant regressions past ``thresholds``."""
    if not allow_different:
        check_comparable(a, b)
    fa, fb = _figures(a), _figures(b)
    rows = []
    for name in sorted(set(fa) | set(fb)):
        x, y = fa.get(name), fb.get(name)
        rows.append(
            Row(
                name,
                None if x is None else x.value,
                None if y is None else y.value,
                x.rounds if x else [],
                y.rounds if y else [],
            )
        )
    by_name = {r.figure: r for r in rows}
    failures = []
    for name, limit in thresholds.items():
        row = by_name.get(name)
        if row is None or row.a is None or row.b is None:
            known = ", ".join(sorted(set(fa) & set(fb)))
            raise RayscaleError(f"--fail {name}: not a figure both bundles have (choose from {known})")
        worse = row.regression_pct()
        if worse is not None and worse > limit and row.significant():
            failures.append(f"{name} regressed {worse:.1f}% (limit {limit:g}%): {row.a:.4g} → {row.b:.4g}")
    return rows, failures


@dataclass(frozen=True)
class Comparison:
    """Two bundles' figures side by side (``rows``), the gates asked for and those that failed."""

    title: str
    rows: list[Row]
    thresholds: dict[str, float]
    failures: list[str]


def compare_bundles(opts: CompareOptions) -> Comparison:
    """``rayscale compare``: check the options, load both bundles, compare them."""
    thresholds = opts.thresholds()
    rows, failures = compare(load_any(opts.a), load_any(opts.b), thresholds, opts.allow_different)
    return Comparison(f"{opts.a} → {opts.b}", rows, thresholds, failures)
