from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rayscale.errors import RayscaleError
from rayscale.work.data import load_dataset


def test_diabetes_default_split_matches_the_seed() -> None:
    d = load_dataset("diabetes")
    assert (d.n_train, d.n_test, d.n_features) == (353, 89, 10)
    assert d.feature_names[:3] == ("age", "sex", "bmi")


def test_friedman1_is_deterministic_from_the_seed() -> None:
    a = load_dataset("friedman1:200:7", seed=3)
    b = load_dataset("friedman1:200:7", seed=3)
    c = load_dataset("friedman1:200:7", seed=4)
    assert a.n_features == 7 and a.n_train + a.n_test == 200
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert not np.array_equal(a.X_train, c.X_train)


def test_friedman1_defaults_to_ten_features() -> None:
    assert load_dataset("friedman1:100").n_features == 10


def test_test_size_shapes_the_split() -> None:
    d = load_dataset("friedman1:100", test_size=0.5)
    assert (d.n_train, d.n_test) == (50, 50)


def test_csv_one_hot_encodes_categories(tmp_path: Path) -> None:
    path = tmp_path / "houses.csv"
    rows = ["rooms,city,price"] + [f"{i % 5 + 1},{['a', 'b', 'c'][i % 3]},{100 + i}" for i in range(30)]
    path.write_text("\n".join(rows) + "\n")
    d = load_dataset(f"csv:{path}:price")
    assert d.feature_names == ("rooms", "city_a", "city_b", "city_c")
    assert d.n_train + d.n_test == 30
    assert set(np.unique(d.X_train[:, 1:])) <= {0.0, 1.0}


@pytest.mark.parametrize(
    ("spec", "content", "message"),
    [
        ("csv:{path}:price", None, "CSV file not found"),
        ("csv:{path}:price", "", "is empty"),
        ("csv:{path}:price", "a,price\n", "has no data rows"),
        ("csv:{path}:cost", "a,price\n1,2\n", "has no column 'cost'"),
        ("csv:{path}:price", "a,price\n1,2\n,3\n4,5\n6,7\n8,9\n", "missing values in column 'a'"),
        ("csv:{path}:price", "price\n1\n2\n", "no feature columns"),
        ("csv:{path}", "a,price\n1,2\n", "csv:PATH:TARGET"),
    ],
)
def test_csv_bad_input(tmp_path: Path, spec: str, content: str | None, message: str) -> None:
    path = tmp_path / "data.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(RayscaleError, match=message):
        load_dataset(spec.format(path=path))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("iris", "unknown dataset 'iris'"),
        ("friedman1", "friedman1:ROWS"),
        ("friedman1:many", "whole number"),
        ("friedman1:5", "at least 10"),
        ("friedman1:100:3", "at least 5"),
        ("diabetes:1", "takes no arguments"),
    ],
)
def test_bad_dataset_specs(spec: str, message: str) -> None:
    with pytest.raises(RayscaleError, match=message):
        load_dataset(spec)


@pytest.mark.parametrize("size", [0.0, 1.0, -0.1, 1.5])
def test_test_size_outside_unit_interval(size: float) -> None:
    with pytest.raises(RayscaleError, match="--test-size"):
        load_dataset("diabetes", test_size=size)


def test_identifier_and_date_columns_are_warned_about(tmp_path) -> None:
    rows = "\n".join(f"id{i},2024-01-{i + 1:02d},{i % 3},{i * 1.5}" for i in range(12))
    path = tmp_path / "t.csv"
    path.write_text("customer,day,group,price\n" + rows + "\n")
    dataset = load_dataset(f"csv:{path}:price")
    assert len(dataset.warnings) == 2
    assert "'customer' is unique per row" in dataset.warnings[0]
    assert "'day' looks like dates" in dataset.warnings[1]


def test_a_validation_split_is_carved_from_the_training_rows() -> None:
    plain, carved = load_dataset("diabetes"), load_dataset("diabetes", validation_size=0.25)
    assert carved.n_test == plain.n_test and carved.n_train + carved.n_val == plain.n_train
    assert carved.n_val == round(plain.n_train * 0.25) or abs(carved.n_val - plain.n_train * 0.25) < 1


def test_a_text_target_is_classes_kept_by_name_and_split_stratified(tmp_path: Path) -> None:
    import pandas as pd

    labels = ["cat"] * 30 + ["dog"] * 20 + ["emu"] * 10
    frame = pd.DataFrame({"x": range(60), "colour": ["red", "blue"] * 30, "label": labels})
    for kind, path in (("csv", tmp_path / "pets.csv"), ("parquet", tmp_path / "pets.parquet")):
        frame.to_csv(path, index=False) if kind == "csv" else frame.to_parquet(path)
        data = load_dataset(f"{kind}:{path}:label", seed=3, test_size=0.25)
        assert data.task == "classification" and data.task_reason == "auto: the target is not numeric"
        assert data.classes == ("cat", "dog", "emu")  # the labels, in the bundle's dataset block
        assert data.describe()["classes"] == ["cat", "dog", "emu"]
        # Stratified: every class keeps its share in the test split (30:20:10 of 15 rows).
        assert sorted(np.bincount(data.y_test)) in ([2, 5, 8], [3, 5, 7])
        assert data.n_features == 3  # x and the one-hot colour


@pytest.mark.parametrize(
    ("name", "task"),
    [("diabetes", "regression"), ("breast_cancer", "classification"), ("wine", "classification"),
     ("iris", "classification"), ("digits", "classification")],
)  # fmt: skip
def test_scikit_learn_bundled_sets(name: str, task: str) -> None:
    data = load_dataset(f"sklearn:{name}")
    assert data.task == task and data.n_train > data.n_test > 0


def test_the_task_rule_and_an_explicit_task() -> None:
    from rayscale.options.scoring import detect

    assert detect(np.array([1.0, 2.0, 3.0] * 5), "auto") == (
        "classification",
        "auto: an integer target with 3 distinct values",
    )
    assert detect(np.arange(40.0), "auto") == ("regression", "auto: a numeric target")
    assert detect(np.array([0.5, 1.5, 2.0]), "auto")[0] == "regression"
    assert detect(np.array([1, 2, 1]), "regression") == ("regression", "--task regression")
    assert detect(np.arange(40.0), "classification")[0] == "classification"
    with pytest.raises(RayscaleError, match="must be numeric for --task regression; found 'b'"):
        detect(np.array([1, "b"], dtype=object), "regression")
