"""The Tune phase on a real embedded Ray (2 CPUs), plus the search-space checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rayscale.errors import RayscaleError
from rayscale.options.commands import TuneOptions
from rayscale.options.scoring import regression_scores as scores
from rayscale.options.space import DEFAULT_SPACE, count_trials, load_space
from rayscale.results.schema import ClusterInfo
from rayscale.work.cluster.session import ray_session
from rayscale.work.data import Dataset, load_dataset
from rayscale.work.tune.sweep import run_sweep

SMALL_SPACE = {"learning_rate": [0.05, 0.1], "max_depth": [2, 3], "subsample": [0.8, 1.0]}


def test_default_space_is_32_configs_over_the_five_parameters() -> None:
    assert set(DEFAULT_SPACE) == {
        "learning_rate",
        "max_depth",
        "subsample",
        "colsample_bytree",
        "min_child_weight",
    }
    assert count_trials(DEFAULT_SPACE, None) == 32
    assert count_trials(DEFAULT_SPACE, 7) == 7


def test_space_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("space:\n  learning_rate: {loguniform: [0.01, 0.3]}\n  max_depth: [3, 5]\n")
    space = load_space(str(path))
    assert space == {"learning_rate": {"loguniform": [0.01, 0.3]}, "max_depth": [3, 5]}
    TuneOptions(space=space, samples=4).validate()


@pytest.mark.parametrize(
    ("space", "samples", "message"),
    [
        ({"eta_typo": [0.1]}, None, "unknown XGBoost parameter 'eta_typo'"),
        ({"max_depth": []}, None, "has no values"),
        ({"learning_rate": {"uniform": [0.3, 0.1]}}, 4, "low < high"),
        ({"learning_rate": {"normal": [0, 1]}}, 4, "must be a list or one of"),
        ({"learning_rate": {"uniform": [0.01, 0.3]}}, None, "needs --samples N"),
    ],
)
def test_bad_spaces(space: dict, samples: int | None, message: str) -> None:
    with pytest.raises(RayscaleError, match=message):
        TuneOptions(space=space, samples=samples).validate()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_rounds": 0}, "--max-rounds must be at least 1"),
        ({"report_every": 0}, "--report-every must be at least 1"),
        ({"samples": 0}, "--samples must be at least 1"),
        ({"reduction_factor": 1}, "--reduction-factor must be at least 2"),
        ({"grace_period": 500}, "--grace-period 500 exceeds --max-rounds 300"),
    ],
)
def test_bad_tune_options(overrides: dict, message: str) -> None:
    with pytest.raises(RayscaleError, match=message):
        TuneOptions(**overrides).validate()


def test_missing_space_file() -> None:
    with pytest.raises(RayscaleError, match="search space file not found"):
        load_space("nope.yaml")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[ClusterInfo]:
    with ray_session("", num_cpus=2) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def diabetes() -> Dataset:
    return load_dataset("diabetes")


@pytest.mark.slow
def test_asha_stops_some_trials_and_records_every_one(ray_cluster, diabetes, tmp_path: Path) -> None:
    opts = TuneOptions(
        space=SMALL_SPACE, max_rounds=120, grace_period=20, reduction_factor=3, report_every=10
    )
    result = run_sweep(diabetes, opts, ray_cluster.cpus, tmp_path)
    assert len(result.trials) == 8 and sorted(t.index for t in result.trials) == list(range(8))
    assert len({tuple(sorted(t.params.items())) for t in result.trials}) == 8  # every config once
    assert 0 < result.stopped_early < 8
    assert all(t.stopped_early == (t.rounds < 120) for t in result.trials)
    assert all(t.rounds % 10 == 0 and 20 <= t.rounds <= 120 for t in result.trials), [
        t.rounds for t in result.trials
    ]
    assert result.rounds_run == sum(t.rounds for t in result.trials) < result.rounds_budget == 8 * 120
    # Baseline vs tuned on diabetes: the sweep does not lose to XGBoost's defaults.
    assert result.best.rmse <= result.baseline.rmse
    assert result.baseline.params == {
        "learning_rate": 0.3,
        "n_estimators": 100,
        "max_depth": 6,
        "subsample": 1.0,
        "colsample_bytree": 1.0,
        "min_child_weight": 1.0,
    }
    assert result.improvement_pct == pytest.approx(100 * (1 - result.best.rmse / result.baseline.rmse))
    assert result.best.rmse == min(t.rmse for t in result.trials)
    assert result.compute_s == pytest.approx(sum(t.compute_s for t in result.trials))
    assert result.overhead_s == pytest.approx(result.wall_s - result.compute_s / 2)
    assert result.max_concurrent == 2 and result.scheduler == "asha"
    assert Path(result.storage) == (tmp_path / "tune").resolve() and Path(result.storage).is_dir()
    assert all(t.node_id and t.end_ts >= t.start_ts for t in result.trials)
    # The best config is reproducible from the bundle alone: its params and its boosting rounds,
    # retrained with plain xgboost.train on the same split, give the same RMSE.
    best = next(t for t in result.trials if t.rmse == result.best.rmse)
    assert result.best.rounds == best.rounds and result.best.params == best.params
    assert _retrained_rmse(diabetes, result.best.params, result.best.rounds, opts) == pytest.approx(
        result.best.rmse, rel=1e-9
    )
    # Did Tune help end to end: the plain loop is every config at max rounds, at its trial's pace.
    assert result.plain_loop_s == pytest.approx(sum(t.compute_s / t.rounds * 120 for t in result.trials))
    assert result.end_to_end.parallel_s == pytest.approx(result.wall_s)
    assert result.end_to_end.pays_off == (result.plain_loop_s > result.wall_s)


def _retrained_rmse(dataset: Dataset, params: dict, rounds: int | None, opts: TuneOptions) -> float:
    import xgboost as xgb

    assert rounds is not None
    booster = xgb.train(
        {
            "objective": "reg:squarederror",
            "tree_method": "hist",
            "nthread": opts.cpus_per_trial,
            "seed": opts.seed,
            **params,
        },
        xgb.DMatrix(dataset.X_train, label=dataset.y_train),
        num_boost_round=rounds,
    )
    return scores(dataset.y_test, booster.predict(xgb.DMatrix(dataset.X_test)))["rmse"]


@pytest.mark.slow
def test_without_a_scheduler_every_trial_runs_to_max_rounds(ray_cluster, diabetes, tmp_path: Path) -> None:
    opts = TuneOptions(space=SMALL_SPACE, max_rounds=60, scheduler="none", report_every=20)
    result = run_sweep(diabetes, opts, ray_cluster.cpus, tmp_path)
    assert len(result.trials) == 8 and result.stopped_early == 0
    assert all(t.rounds == 60 for t in result.trials)
    assert result.rounds_run == result.rounds_budget == 480
    assert result.grace_period is None


@pytest.mark.slow
def test_random_sampling_with_tunes_defaults(ray_cluster, diabetes, tmp_path: Path) -> None:
    space = {"learning_rate": {"loguniform": [0.02, 0.3]}, "max_depth": [2, 3, 4]}
    opts = TuneOptions.tune_defaults(space=space, samples=3, max_rounds=20, scheduler="none")
    result = run_sweep(diabetes, opts, ray_cluster.cpus, tmp_path)
    assert len(result.trials) == 3 and result.sampling == "random"
    assert all(0.02 <= t.params["learning_rate"] <= 0.3 for t in result.trials)
    assert result.checkpoint and result.loggers and not result.reuse_actors and result.report_every == 1
    assert list((tmp_path / "tune" / "sweep").glob("*/checkpoint_*")), "Tune's defaults write checkpoints"


def test_cpus_per_trial_above_the_cluster_fails_fast(diabetes, tmp_path: Path) -> None:
    with pytest.raises(RayscaleError, match="more than the cluster's 2 CPUs"):
        run_sweep(diabetes, TuneOptions(cpus_per_trial=3), 2, tmp_path)


def test_numbers_yaml_reads_as_strings_are_accepted(tmp_path: Path) -> None:
    from rayscale.options.space import load_space, validate_space

    path = tmp_path / "space.yaml"
    path.write_text("space:\n  learning_rate: [1e-3, 0.1]\n  reg_lambda: 2E2\n")
    space = load_space(str(path))
    assert space == {"learning_rate": [0.001, 0.1], "reg_lambda": 200.0}
    validate_space(space, None)
