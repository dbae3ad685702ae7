"""Fair turns: round-robin over users, one image per turn, compatible jobs only, nobody starved."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from model.engine.fair_queue import FairQueue


@dataclass(eq=False)
class Job:
    user: str
    images: int = 1
    key: str = "k"
    name: str = ""
    rows: int = 1
    pending: deque[int] = field(init=False)

    def __post_init__(self) -> None:
        self.pending = deque(range(self.images))


def names(batch: list[tuple[Job, int]]) -> list[str]:
    return [f"{job.name or job.user}{index}" for job, index in batch]


def test_one_image_per_user_turn() -> None:
    queue = FairQueue()
    queue.push(Job("a", images=8))
    for user in "bcd":
        queue.push(Job(user))
    assert names(queue.take(4)) == ["a0", "b0", "c0", "d0"]
    assert names(queue.take(4)) == ["a1", "a2", "a3", "a4"]
    assert len(queue) == 1


def test_turns_continue_after_the_last_user_served() -> None:
    queue = FairQueue()
    for user in "abc":
        queue.push(Job(user, images=4))
    assert names(queue.take(2)) == ["a0", "b0"]
    assert names(queue.take(2)) == ["c0", "a1"]
    assert names(queue.take(2)) == ["b1", "c1"]


def test_a_users_jobs_stay_in_order() -> None:
    queue = FairQueue()
    queue.push(Job("a", name="first"))
    queue.push(Job("a", name="second"))
    queue.push(Job("b"))
    assert names(queue.take(8)) == ["first0", "b0", "second0"]


def test_incompatible_jobs_wait_for_the_next_batch_but_are_not_starved() -> None:
    queue = FairQueue()
    queue.push(Job("a", images=3))
    queue.push(Job("b", key="other"))
    queue.push(Job("c", images=3))
    assert names(queue.take(8)) == ["a0", "c0", "a1", "c1", "a2", "c2"]
    queue.push(Job("a", images=3))
    assert names(queue.take(8)) == ["b0"]


def test_a_batch_counts_rows_so_many_candidates_fill_it_as_they_cost() -> None:
    queue: FairQueue[Any] = FairQueue()  # the test Job, whose str key mypy holds against Hashable
    queue.push(Job("a", images=8, rows=8))  # 64 rows
    queue.push(Job("b"))
    queue.push(Job("c", rows=4))
    assert names(queue.take(8)) == ["a0"], "a's image fills the cap; b and c do not fit beside it"
    assert names(queue.take(8)) == ["b0", "c0"], "so they go first next, together, within the cap"
    assert names(queue.take(8)) == ["a1"]
    queue.push(Job("d", rows=16))
    assert names(queue.take(8)) == ["a2"], "d waits its turn: a is first after a1"
    assert names(queue.take(8)) == ["d0"], "an image with more rows than the cap runs alone"


def test_remove_and_positions() -> None:
    queue = FairQueue()
    a1, a2, b = Job("a", images=2, name="a1-"), Job("a", name="a2-"), Job("b")
    for job in (a1, a2, b):
        queue.push(job)
    assert [(job.name or job.user, ahead) for job, ahead in queue.order()] == [
        ("a1-", 0),
        ("b", 1),
        ("a2-", 3),
    ]
    assert queue.remove(b) and not queue.remove(b)
    assert b not in queue and a2 in queue
    assert names(queue.take(8)) == ["a1-0", "a1-1", "a2-0"]
    assert queue.take(8) == []
