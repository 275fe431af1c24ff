"""Node-count sweeps on real multi-node Ray clusters started on this machine (several raylets)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from promstack import QUERIES, PromStack  # tests/promstack.py
from rayscale.cli import app
from rayscale.errors import RayscaleError
from rayscale.options.commands import RunOptions, ScaleOptions, parse_nodes
from rayscale.options.files import SCALE_FILE
from rayscale.results.bundle import load_any
from rayscale.results.scaling import ScaleResult
from rayscale.views.plots import write_scale_plot
from rayscale.work.cluster.local import local_raylets
from rayscale.work.scale import run_scale
from standins import RayletOperator  # tests/standins.py


@pytest.mark.parametrize(("text", "expected"), [("1,2,4", (1, 2, 4)), ("4, 1", (1, 4)), ("3", (3,))])
def test_parse_nodes(text: str, expected: tuple[int, ...]) -> None:
    assert parse_nodes(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "comma list"),
        ("1,,2", "comma list"),
        ("0", "at least 1"),
        ("-2", "at least 1"),
        ("1,2,2", "listed twice"),
        ("one,two", "not a whole number"),
        ("1.5", "not a whole number"),
    ],
)
def test_bad_node_lists(text: str, message: str) -> None:
    with pytest.raises(RayscaleError, match=message):
        parse_nodes(text)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--nodes", "1,2"], "needs --local-cluster, --kuberay NAME, or --address"),
        (["--nodes", "1,x", "--local-cluster"], "'x' is not a whole number"),
        (
            ["--nodes", "1,2", "--local-cluster", "--kuberay", "rc"],
            "choose one of --local-cluster and --kuberay",
        ),
        (["--nodes", "1,2", "--local-cluster", "--phases", "grid-seq"], "not 'grid-seq'"),
        (["--nodes", "1,2", "--address", "10.0.0.1:6379", "--phases", "tune"], "cannot be confined"),
        (["--nodes", "1", "--local-cluster", "--cpus-per-trial", "2"], "more than --cpus-per-node 1"),
        (["--nodes", "1", "--local-cluster", "--price-per-node-hour", "-1"], "must be a positive number"),
    ],
)
def test_scale_bad_input_is_one_line(args: list[str], fragment: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["scale", *args, "--output", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], lines
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
@pytest.mark.cluster
def test_two_node_local_cluster_spreads_trials_and_writes_the_bundle(
    tmp_path: Path, small_grid: Path
) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("product:\n  n_estimators: [30, 60, 90]\n  max_depth: [2, 3]\n")
    opts = ScaleOptions(
        nodes=(1, 2),
        cpus_per_node=1,
        local_cluster=True,
        price_per_node_hour=2.0,
        deadline_s=60,
        run=RunOptions(grid=str(grid), repeats=2, phases=("grid-ray",), output=tmp_path / "s"),
    )
    result, out = run_scale(opts)
    write_scale_plot(result, out)  # the view the CLI draws after the work
    assert result.mode == "local" and result.node_counts == [1, 2]
    one, two = sorted(result.points, key=lambda p: p.nodes)
    assert (one.cpus, two.cpus) == (1, 2)
    # Trials really spread: two distinct Ray nodes ran trials at N = 2, one at N = 1.
    assert len(one.trials_per_node) == 1 and len(two.trials_per_node) == 2
    assert sum(two.trials_per_node.values()) == 6 and min(two.trials_per_node.values()) >= 1
    assert one.speedup == 1.0 and two.speedup == pytest.approx(one.wall_s / two.wall_s)
    assert two.parallel_efficiency == pytest.approx(two.speedup / 2)
    assert two.karp_flatt == pytest.approx((1 / two.speedup - 0.5) / 0.5)
    assert len(one.rounds_s) == 2 and one.wall_min_s <= one.wall_s <= one.wall_max_s
    assert [f.phase for f in result.fits] == ["grid_parallel"]
    assert result.cheapest and result.cheapest[0].nodes in (1, 2)
    assert two.cost_per_trial == pytest.approx(two.node_hours * 2.0 / 6)
    assert (out / "scaling.png").stat().st_size > 10_000
    loaded = load_any(out / SCALE_FILE)
    assert isinstance(loaded, ScaleResult) and loaded == result


@pytest.mark.slow
@pytest.mark.cluster
def test_existing_cluster_uses_only_the_first_n_nodes(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("product:\n  n_estimators: [20, 40]\n  max_depth: [2, 3]\n")
    with local_raylets(2, 1) as address:  # an "existing" 2-node cluster that rayscale connects to
        run = RunOptions(
            grid=str(grid), repeats=1, phases=("grid-ray",), address=address, output=tmp_path / "a"
        )
        result, _ = run_scale(ScaleOptions(nodes=(1, 2), run=run))
    one, two = sorted(result.points, key=lambda p: p.nodes)
    assert result.mode == "address"
    assert len(one.trials_per_node) == 1 and len(two.trials_per_node) == 2
    assert set(one.trials_per_node) < set(two.trials_per_node)  # N = 1 used the first of the two nodes


def test_compare_cli_fails_on_a_regression(tmp_path: Path) -> None:
    from factories import write_scale_pair  # tests/factories.py

    a, b = write_scale_pair(tmp_path)
    ok = CliRunner().invoke(app, ["compare", str(a), str(b), "--fail", "speedup:50%"])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(app, ["compare", str(a), str(b), "--fail", "speedup:5%"])
    assert bad.exit_code == 1
    assert "speedup regressed" in bad.stderr and json.loads(a.read_text())["kind"] == "scale"


@pytest.mark.slow
@pytest.mark.cluster
def test_kuberay_mode_measures_the_resize_ramp_and_pushes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prom_stack: PromStack
) -> None:
    from ray.cluster_utils import Cluster

    import rayscale.work.cluster.kuberay

    grid = tmp_path / "grid.yaml"
    # Fits long enough (0.2–1 s) that Ray's scheduler spreads them over both nodes.
    grid.write_text("product:\n  n_estimators: [60, 120, 180]\n  max_depth: [3, 4]\n")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    operator = RayletOperator(cluster)
    monkeypatch.setattr(rayscale.work.cluster.kuberay, "default_api", lambda: operator)
    try:
        opts = ScaleOptions(
            nodes=(1, 2),
            kuberay="rayscale",
            namespace="bench",
            run=RunOptions(
                dataset="friedman1:2000",
                grid=str(grid),
                repeats=1,
                phases=("grid-ray",),
                address=cluster.address,
                output=tmp_path / "s",
                push_gateway=prom_stack.gateway_url,
            ),
        )
        result, _ = run_scale(opts)
    finally:
        cluster.shutdown()
    one, two = sorted(result.points, key=lambda p: p.nodes)
    # Nothing joined for 1 node (the head alone): no first trial on a new node.
    assert one.resize_s is not None and one.first_trial_s is None
    # 2 nodes: the worker raylet started at the patch, registered, warmed up, then ran trials.
    assert two.resize_s is not None and 0 < two.resize_s < 60
    assert two.first_trial_s is not None and two.first_trial_s > two.resize_s
    assert len(two.trials_per_node) == 2
    assert operator.body["spec"]["workerGroupSpecs"][0]["replicas"] == 0 and not operator.workers  # restored
    loaded = load_any(tmp_path / "s" / SCALE_FILE)
    assert isinstance(loaded, ScaleResult) and loaded.points[1].first_trial_s == two.first_trial_s
    # The ramp reached Prometheus, and the dashboard's resize panel reads it.
    panel = next(p for p in yaml.safe_load(QUERIES.read_text())["panels"] if p.get("needs"))
    expr = panel["targets"][0]["expr"].replace("$run_id", f"{result.run_id}-n.*").replace("$workload", ".*")
    deadline = time.monotonic() + 60
    while len(series := prom_stack.api("query", query=expr)["result"]) < 3:
        assert time.monotonic() < deadline, f"resize series in Prometheus: {series}"
        time.sleep(0.5)
    values = {(s["metric"]["nodes"], s["metric"]["stage"]): float(s["value"][1]) for s in series}
    assert values[("2", "nodes_alive")] == pytest.approx(two.resize_s)
    assert values[("2", "first_trial")] == pytest.approx(two.first_trial_s)
    assert ("1", "first_trial") not in values
