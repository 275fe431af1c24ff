"""rayscale.work.sim.slots: list schedules checked by hand, where the first tasks land, a worker node's
speed from what the head's cluster processes took, and the dispatch gap."""

from __future__ import annotations

import pytest

from factories import trial
from rayscale.results.scaling import Emulation
from rayscale.work.sim.slots import dispatch_order, list_schedule, slot_speeds, worker_gap, worker_speed


@pytest.mark.parametrize(
    ("durations", "slots", "gap", "makespan"),
    [
        # A: 3, then 1 (ends 4); B: 2, then 2 (ends 4).
        ([3, 2, 2, 1], 2, 0.0, 4.0),
        # With 0.5 s per dispatch: A 0.5+3 = 3.5; B 0.5+2 = 2.5, then B 2.5+0.5+2 = 5.0; A 3.5+0.5+1 = 5.0.
        ([3, 2, 2, 1], 2, 0.5, 5.0),
        # A list schedule, not the optimum: 3,3 | 2,2 | 2 ends at 7 (the best split, 3+3 / 2+2+2, is 6).
        ([3, 3, 2, 2, 2], 2, 0.0, 7.0),
        # One long task and many short ones: B runs all five 1 s tasks while A runs the 5 s one.
        ([5, 1, 1, 1, 1, 1], 2, 0.0, 5.0),
        # More slots than tasks: the longest one, after its dispatch.
        ([4, 1], 8, 0.25, 4.25),
        # One slot: the sum.
        ([1, 2, 3], 1, 0.0, 6.0),
    ],
)
def test_list_schedule_matches_hand_computed_makespans(
    durations: list[float], slots: int, gap: float, makespan: float
) -> None:
    assert list_schedule(durations, slots, gap) == pytest.approx(makespan)


def test_a_worker_gap_is_the_idle_time_between_its_own_tasks() -> None:
    trials = [
        trial(0, start=0.0, end=1.0, pid=1),
        trial(1, start=1.2, end=2.0, pid=1),  # 0.2 s after its first
        trial(2, start=0.0, end=3.0, pid=2),
        trial(3, start=3.4, end=4.0, pid=2),  # 0.4 s after its first
        trial(4, start=4.6, end=5.0, pid=2),  # 0.6 s after its second
    ]
    assert worker_gap(trials) == pytest.approx(0.4)
    assert worker_gap(trials[:1]) == 0.0


def test_slots_of_unequal_speed_take_each_task_at_their_own_pace() -> None:
    # slot 1 runs at half the time: A 1 | B 0.5, then B's next 0.5 → 1.0 (without speeds, 2.0)
    assert list_schedule([1, 1, 1], 2, 0.0, [1.0, 0.5]) == pytest.approx(1.0)
    assert list_schedule([1, 1, 1], 2, 0.0) == pytest.approx(2.0)
    assert slot_speeds(6, 2, 0.8) == [1.0, 1.0, 0.8, 0.8, 0.8, 0.8]  # the head's two, then the workers'


def test_slots_free_together_take_tasks_in_the_order_given() -> None:
    # The head (slot 0) at 1.0, a worker at 0.5: the 4 s task on the worker ends at 2; on the head at 4.
    assert list_schedule([4, 1], 2, 0.0, [1.0, 0.5], order=[1, 0]) == pytest.approx(2.0)
    assert list_schedule([4, 1], 2, 0.0, [1.0, 0.5], order=[0, 1]) == pytest.approx(4.0)
    # order[k] is the slot that takes the k-th task: the 4 s one on slot 1 (2.0), then slot 2 (0.25),
    # then slot 0 (1.0). Read the other way (slot i takes the order[i]-th) it would end at 1.0.
    assert list_schedule([4, 1, 1], 3, 0.0, [1.0, 0.5, 0.25], order=[1, 2, 0]) == pytest.approx(2.0)
    for speeds, order in (([1.0], None), ([1.0, 1.0], [0, 0]), ([1.0, 1.0], [1])):
        with pytest.raises(ValueError, match="one factor per slot and order every slot once"):
            list_schedule([1], 2, 0.0, speeds, order)


def test_the_workers_slots_take_the_first_tasks_and_the_heads_the_last() -> None:
    # The runner's dispatch: the head's slots (0 … per_node − 1) after every worker's.
    assert dispatch_order(3, 1) == [1, 2, 0]
    assert dispatch_order(6, 2) == [2, 3, 4, 5, 0, 1]
    assert dispatch_order(2, 2) == [0, 1]  # one node
    # The head slower (1.0 against the workers' 0.5): the longest task goes to a worker.
    order = dispatch_order(2, 1)
    assert list_schedule([4, 1], 2, 0.0, slot_speeds(2, 1, 0.5), order) == pytest.approx(2.0)


def _emulation(ray_cpu: dict[str, float], cluster_cpu: float | None) -> Emulation:
    return Emulation(
        cpu_limit=0.2, cfs_period_us=10_000, host_idle=0.8, ray_cpu=ray_cpu, cluster_cpu=cluster_cpu,
        faithful=True,
    )  # fmt: skip


def test_a_worker_node_gives_trials_what_the_heads_cluster_processes_took() -> None:
    # The measured head: 0.2 core, 0.01 to its own Ray processes, 0.03 to the GCS and monitor; its
    # trial got 0.16. A worker runs only its own: 0.19 for the trial, so 0.16 / 0.19 of the time.
    one = _emulation({"198.18.0.1": 0.01}, 0.03)
    assert worker_speed(one, 1.0) == pytest.approx(0.16 / 0.19)
    assert worker_speed(one, 0.1) == 1.0  # trials asking for less than either leaves: no difference
    assert worker_speed(None, 1.0) == 1.0  # not isolated: nothing measured to tell them apart
    assert worker_speed(_emulation({"198.18.0.1": 0.01}, None), 1.0) == 1.0
    assert worker_speed(_emulation({"198.18.0.1": 0.01, "198.18.0.2": 0.01}, 0.03), 1.0) == 1.0  # 2 nodes
