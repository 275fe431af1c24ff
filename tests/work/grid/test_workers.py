"""The grid's slot actors on a real embedded Ray with 2 CPUs."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from rayscale.work.cluster.session import ray_session
from rayscale.work.data import load_dataset
from rayscale.work.grid.configs import load_grid
from rayscale.work.grid.runners import RayGridRunner, mismatches, run_sequential

pytestmark = pytest.mark.slow


def _free_cpus(wait_s: float = 0.0) -> float:
    import ray

    deadline = time.monotonic() + wait_s
    while True:
        free = ray.available_resources().get("CPU", 0.0)
        if free >= 2 or time.monotonic() >= deadline:
            return free
        time.sleep(0.2)


def test_each_slot_is_one_worker_for_every_round_and_close_gives_its_cpus_back(small_grid: Path) -> None:
    dataset = load_dataset("diabetes")
    specs = load_grid(str(small_grid))
    _, sequential = run_sequential(specs, dataset)
    with ray_session("", num_cpus=2):
        runner = RayGridRunner(dataset, 1, 2)
        runner.warm_up()
        assert _free_cpus() == 0  # the two slots' actors hold the CPUs between rounds
        rounds = [runner.run(specs)[1] for _ in range(2)]
        runner.close()
        assert _free_cpus(wait_s=10) == 2
    pids = {t.pid for trials in rounds for t in trials}
    assert len(pids) == 2  # the same two processes in both rounds: no round starts a worker
    for trials in rounds:
        assert mismatches(sequential, trials) == []


def test_a_slot_about_to_free_holds_its_next_config_in_waiting_until_the_tail(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("product:\n  n_estimators: [30, 40, 50, 60, 70, 80]\n  max_depth: [2, 3]\n")
    dataset = load_dataset("friedman1:1000")
    specs = load_grid(str(grid))
    with ray_session("", num_cpus=2):
        runner = RayGridRunner(dataset, 1, 2)
        runner.warm_up()
        runner.run(specs)  # the pilot: the seconds per cost measured
        _, trials = runner.run(specs)
        runner.close()
    assert sorted(t.index for t in trials) == list(range(12))  # every config exactly once
    waited = []
    for _, mine in itertools.groupby(sorted(trials, key=lambda t: (t.pid, t.start_ts)), key=lambda t: t.pid):
        for before, after in itertools.pairwise(mine):
            if after.start_ts - after.queue_s < before.end_ts:  # submitted while the slot was busy
                waited.append(after)
    # 12 configs on 2 slots: the first two go to free slots; while more than four remain, a slot
    # about to free takes the next in waiting; the last four wait for a free slot
    assert 2 <= len(waited) <= 6, [(t.index, round(t.queue_s, 3)) for t in waited]
    last_four = sorted(trials, key=lambda t: t.start_ts - t.queue_s)[-4:]
    assert not set(map(id, last_four)) & set(map(id, waited))
