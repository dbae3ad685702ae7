"""Fair turns: per-user FIFO queues served round-robin, one image per turn (InvokeAI's rule).

A batch takes its first image from the user whose turn it is; that job's batch key then decides which
other users' head jobs may join (same size, steps, scheduler, ...). A batch's size is counted in rows: an
image takes as many as its job's ``rows`` (its decoder candidates), so one user's many-candidate images fill
a batch as they cost, and a batch-mate is never held behind more than the cap. Users whose head job did not
fit (another key, or too many rows for what is left) get the next batch's first turn, so no request is
starved; the first image of a batch is always taken, however many rows it has.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar


class QueuedJob(Protocol):
    user: str
    key: Hashable
    rows: int  # batch rows each of its images takes (its decoder candidates)
    pending: deque[int]  # image indices not yet handed to a batch


Job = TypeVar("Job", bound=QueuedJob)


class FairQueue(Generic[Job]):
    """Queued jobs of any type with the Job fields; they come back out as the same type."""

    def __init__(self) -> None:
        self._jobs: dict[str, deque[Job]] = {}
        self._turns: deque[str] = deque()  # users in turn order; the head goes next

    def __len__(self) -> int:
        return sum(len(jobs) for jobs in self._jobs.values())

    def __contains__(self, job: Job) -> bool:
        return job in self._jobs.get(job.user, ())

    def push(self, job: Job) -> None:
        if job.user not in self._jobs:
            self._jobs[job.user] = deque()
            self._turns.append(job.user)
        self._jobs[job.user].append(job)

    def remove(self, job: Job) -> bool:
        jobs = self._jobs.get(job.user)
        if jobs is None or job not in jobs:
            return False
        jobs.remove(job)
        if not jobs:
            self._drop_user(job.user)
        return True

    def next_key(self) -> Hashable | None:
        """The batch key ``take`` will serve next (its first user's head job's), None when nothing is queued."""
        return self._jobs[self._turns[0]][0].key if self._turns else None

    def take(self, max_rows: int) -> list[tuple[Job, int]]:
        """The next batch: (job, image index) pairs, round-robin over users, all with the first one's key, of at
        most ``max_rows`` rows in all (or one image that alone has more)."""
        if not self._turns:
            return []
        users = list(self._turns)
        key = self._jobs[users[0]][0].key
        taken: list[tuple[Job, int]] = []
        rows = 0
        skipped: list[str] = []
        last_served = 0
        while rows < max_rows:
            progress = False
            for position, user in enumerate(users):
                if rows >= max_rows:
                    break
                jobs = self._jobs.get(user)
                if not jobs:
                    continue
                job = jobs[0]
                if job.key != key or (taken and rows + job.rows > max_rows):
                    if user not in skipped:
                        skipped.append(user)
                    continue
                taken.append((job, job.pending.popleft()))
                rows += job.rows
                last_served, progress = position, True
                if not job.pending:
                    jobs.popleft()
            if not progress:
                break
        for user in users:
            if not self._jobs.get(user):
                self._drop_user(user)
        after = users[last_served + 1 :] + users[: last_served + 1]
        following = [user for user in skipped + after if user in self._jobs]
        if following:
            self._turns.rotate(-self._turns.index(following[0]))
        return taken

    def order(self) -> list[tuple[Job, int]]:
        """Every queued job with the number of images handed out before its first one, in serving order
        (round-robin, ignoring batch keys and sizes: what the user's queue position means)."""
        queues = {user: [(job, len(job.pending)) for job in jobs] for user, jobs in self._jobs.items()}
        cursor = {user: [0, 0] for user in queues}  # job index, images taken from it
        first_seen: list[tuple[Job, int]] = []
        handed = 0
        active = [user for user in self._turns if queues.get(user)]
        while active:
            still = []
            for user in active:
                job_index, used = cursor[user]
                job, count = queues[user][job_index]
                if used == 0:
                    first_seen.append((job, handed))
                handed += 1
                used += 1
                if used == count:
                    job_index, used = job_index + 1, 0
                cursor[user] = [job_index, used]
                if job_index < len(queues[user]):
                    still.append(user)
            active = still
        return first_seen

    def jobs(self) -> list[Job]:
        return [job for jobs in self._jobs.values() for job in jobs]

    def jobs_of(self, user: str) -> list[Job]:
        """One user's queued jobs (a job partly handed to a batch stays until its last image is)."""
        return list(self._jobs.get(user, ()))

    def _drop_user(self, user: str) -> None:
        self._jobs.pop(user, None)
        if user in self._turns:
            self._turns.remove(user)
