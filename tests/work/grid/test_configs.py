from __future__ import annotations

from pathlib import Path

import pytest

from rayscale.errors import RayscaleError
from rayscale.work.grid.configs import TrialSpec, load_grid, seed_grid


def test_seed_grid_is_the_first_seeds_twenty_configs() -> None:
    grid = seed_grid(42)
    assert len(grid) == 20
    assert [s.params["n_estimators"] for s in grid] == list(range(50, 250, 10))
    assert grid[0].params["learning_rate"] == 0.05
    assert grid[3].params == {"n_estimators": 80, "learning_rate": 0.065, "max_depth": 2, "random_state": 42}
    assert grid[19].params["learning_rate"] == 0.145
    assert [s.params["max_depth"] for s in grid] == [2] * 5 + [3] * 5 + [4] * 5 + [5] * 5
    assert {s.params["random_state"] for s in seed_grid(7)} == {7}


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return str(path)


def test_explicit_configs_and_product_combine(tmp_path: Path) -> None:
    grid = load_grid(
        _write(
            tmp_path,
            """
configs:
  - {n_estimators: 30, learning_rate: 0.2, max_depth: 2}
product:
  n_estimators: [10, 20]
  learning_rate: [0.05, 0.1]
  max_depth: 3
""",
        ),
        seed=5,
    )
    assert len(grid) == 5
    assert grid[0].params == {"n_estimators": 30, "learning_rate": 0.2, "max_depth": 2, "random_state": 5}
    assert [(s.params["n_estimators"], s.params["learning_rate"]) for s in grid[1:]] == [
        (10, 0.05),
        (10, 0.1),
        (20, 0.05),
        (20, 0.1),
    ]
    assert all(s.params["max_depth"] == 3 for s in grid[1:])
    assert [s.index for s in grid] == list(range(5))


def test_explicit_random_state_is_kept(tmp_path: Path) -> None:
    grid = load_grid(_write(tmp_path, "configs:\n  - {n_estimators: 10, random_state: 1}\n"), seed=5)
    assert grid[0].params["random_state"] == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("configs: []\n", "the grid is empty"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("configs: {n_estimators: 10}\n", "must be a list"),
        ("configs:\n  - {n_trees: 10}\n", "unknown GradientBoostingRegressor parameter 'n_trees'"),
        ("configs:\n  - {n_estimators: 0}\n", "n_estimators must be positive"),
        ("configs:\n  - {n_estimators: -5}\n", "n_estimators must be positive"),
        ("configs:\n  - {n_estimators: '10'}\n", "n_estimators must be a whole number"),
        ("configs:\n  - {n_estimators: 10.5}\n", "n_estimators must be a whole number"),
        ("configs:\n  - {learning_rate: 0}\n", "learning_rate must be greater than 0"),
        ("configs:\n  - {learning_rate: -0.1}\n", "learning_rate must be greater than 0"),
        ("configs:\n  - {learning_rate: fast}\n", "learning_rate must be a number"),
        ("configs:\n  - {max_depth: 0}\n", "max_depth must be a positive whole number"),
        ("configs:\n  - {subsample: 1.5}\n", "subsample must be a number in"),
        ("configs:\n  - {loss: cubic}\n", "loss"),
        ("configs:\n  - 7\n", "non-empty mapping"),
        ("product:\n  n_estimators: []\n", "has no values"),
        ("product: [1, 2]\n", "'product' must map"),
        ("grid:\n  - {n_estimators: 10}\n", "unknown key 'grid'"),
        ("configs: [\n", "not valid YAML at line"),
    ],
)
def test_bad_grids_fail_up_front(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(RayscaleError, match=message) as info:
        load_grid(_write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_missing_grid_file() -> None:
    with pytest.raises(RayscaleError, match=r"grid file not found: nope\.yaml"):
        load_grid("nope.yaml")


def test_max_trials_refuses_large_grids() -> None:
    with pytest.raises(RayscaleError, match="20 configs, more than --max-trials 10"):
        load_grid("seed", max_trials=10)
    assert len(load_grid("seed", max_trials=20)) == 20


def test_cost_grows_with_trees_depth_rows_and_features() -> None:
    base = TrialSpec(0, {"n_estimators": 100, "max_depth": 3})
    assert TrialSpec(1, {"n_estimators": 200, "max_depth": 3}).cost(100, 10) == 2 * base.cost(100, 10)
    assert TrialSpec(2, {"n_estimators": 100, "max_depth": 6}).cost(100, 10) == 2 * base.cost(100, 10)
    assert base.cost(200, 10) == 2 * base.cost(100, 10)
    assert base.cost(100, 20) == 2 * base.cost(100, 10)
    assert TrialSpec(3, {"n_estimators": 100, "max_depth": 3, "subsample": 0.5}).cost(100, 10) == (
        base.cost(100, 10) / 2
    )


def test_seed_grid_cost_orders_the_heaviest_configs_first() -> None:
    ordered = sorted(seed_grid(), key=lambda s: s.cost(353, 10), reverse=True)
    assert ordered[0].index == 19 and ordered[-1].index == 0


def test_a_grid_names_its_estimator_and_gets_seed_and_threads(tmp_path: Path) -> None:
    path = tmp_path / "forest.yaml"
    path.write_text(
        "estimator: sklearn.ensemble.RandomForestClassifier\n"
        "product:\n  n_estimators: [10, 20]\n  max_depth: [3, null]\n"
    )
    specs = load_grid(str(path), seed=9, threads=2)
    assert [s.estimator for s in specs] == ["sklearn.ensemble.RandomForestClassifier"] * 4
    assert specs[1].params == {"n_estimators": 10, "max_depth": None, "random_state": 9, "n_jobs": 2}
    # No tree count formula breaks on None: an unlimited depth is costed, and more trees cost more.
    assert specs[2].cost(100, 5) > specs[0].cost(100, 5) > 0 and specs[1].cost(100, 5) > specs[0].cost(100, 5)
    xgb = tmp_path / "xgb.yaml"
    xgb.write_text("estimator: xgboost.XGBRegressor\nconfigs:\n  - {n_estimators: 5}\n")
    assert load_grid(str(xgb), seed=1, threads=3)[0].params == {
        "n_estimators": 5,
        "random_state": 1,
        "n_jobs": 3,
    }


def test_the_seed_grid_keeps_its_estimator_and_costs() -> None:
    specs = load_grid("seed")
    assert {s.estimator for s in specs} == {"sklearn.ensemble.GradientBoostingRegressor"}
    assert specs[0].cost(100, 10) == 50 * 2 * 100 * 10  # trees × depth × rows × features, as before
