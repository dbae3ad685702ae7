"""Many threads recording generations with images at once: nothing lost, nothing left over."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from storage import Storage
from storage.models import Generation, Image
from storage.types import GenerationStatus

from .conftest import People
from .helpers import generate

THREADS = 8
PER_THREAD = 50
IMAGES = 2


def test_eight_threads_record_fifty_generations_each(storage: Storage, people: People) -> None:
    owners = [people.alice, people.bob, people.rita, people.ruth]
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work(n: int) -> None:
        try:
            start.wait()
            for i in range(PER_THREAD):
                generate(
                    storage, owners[n % len(owners)], f"thread {n} job {i}", images=IMAGES, seed=n * 1000 + i
                )
        except BaseException as exc:  # reported below, with the thread's traceback
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with storage.db.read() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(Generation)
                .where(Generation.status == GenerationStatus.SUCCEEDED.value)
            )
            == THREADS * PER_THREAD
        )
        seeds = set(session.scalars(select(Generation.seed)))
        assert seeds == {n * 1000 + i for n in range(THREADS) for i in range(PER_THREAD)}
        hashes = set(session.scalars(select(Image.sha256)))
    assert len(hashes) == THREADS * PER_THREAD * IMAGES
    files = {p.name.removesuffix(".png") for p in storage.images.root.rglob("*") if p.is_file()}
    assert files == hashes  # no orphan, no temp file, no missing file
    assert storage.check.run().ok
