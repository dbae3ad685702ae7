"""Storage benchmark on SQLite: how fast generations are recorded, and how fast the history is searched.

    python bench/storage.py [--prompts 100000] [--generations 200] [--searches 300] [--data-dir DIR]

1. Records `--generations` generations the way the studio does (prompt, queued, running, four
   64x64 PNGs with their recipe encoded and written atomically with fsync, succeeded) and prints
   generations per second.
2. Bulk-loads `--prompts` prompts, each with a generation and an image row, then times history
   searches a member would type (words, word starts, with and without filters) and prints p50/p95.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image, ImageDraw
from sqlalchemy import func, insert, select

# First on the path: this file is itself named storage.py, and the package must win.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage import Storage, open_storage
from storage.metadata import Recipe, encode_png
from storage.models import Generation, Prompt
from storage.models import Image as ImageRow
from storage.types import OPERATOR, HistoryQuery, NewImage, ReviewStatus, Role

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
SHAPES = ["circle", "square", "triangle", "star", "hexagon", "cross", "ring", "diamond"]
SIZES = ["small", "large", "tiny", "huge"]
PLACES = ["top left", "top right", "bottom left", "bottom right", "in the centre"]
AUTHORS = 20
BATCH = 5000


def caption(rng: random.Random) -> str:
    return (
        f"a {rng.choice(SIZES)} {rng.choice(COLOURS)} {rng.choice(SHAPES)} on a {rng.choice(COLOURS)} "
        f"background, {rng.choice(PLACES)}"
    )


def picture(rng: random.Random, size: int) -> Image.Image:
    image = Image.new("RGB", (size, size), rng.choice(COLOURS))
    x, y = rng.randrange(size // 2), rng.randrange(size // 2)
    ImageDraw.Draw(image).ellipse((x, y, x + size // 3, y + size // 3), fill=rng.choice(COLOURS))
    return image


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def bench_recording(storage: Storage, user_id: int, count: int, images: int, size: int) -> None:
    rng = random.Random(1)
    start = time.perf_counter()
    for _ in range(count):
        prompt = storage.prompts.create(user_id, text=caption(rng))
        generation = storage.generations.create(
            user_id,
            prompt.id,
            model_id="embedded",
            model_hash="bench",
            params={"steps": 25, "guidance_scale": 4.0},
            seed=rng.randrange(2**31),
        )
        storage.generations.mark_running(generation.id)
        pngs = [
            NewImage(
                i,
                encode_png(
                    picture(rng, size),
                    Recipe(
                        prompt=prompt.text,
                        seed=generation.seed,
                        generation_id=generation.id,
                        image_index=i,
                        steps=25,
                        width=size,
                        height=size,
                    ),
                ),
                size,
                size,
            )
            for i in range(images)
        ]
        storage.generations.mark_succeeded(generation.id, images=pngs, model_s=0.0, queue_wait_s=0.0)
    elapsed = time.perf_counter() - start
    print(
        f"recording: {count} generations x {images} images of {size}x{size} in {elapsed:.2f} s "
        f"-> {count / elapsed:.1f} generations/s ({count * images / elapsed:.0f} images/s), one thread, "
        "PNG encoding + fsynced atomic writes included"
    )


def bulk_load(storage: Storage, authors: list[int], count: int) -> None:
    """Prompts, generations and image rows through Core bulk inserts (the FTS triggers still run)."""
    rng = random.Random(2)
    now = datetime.now(UTC)
    statuses = [s.value for s in ReviewStatus]
    start = time.perf_counter()
    with storage.db.write() as session:
        first_prompt = (session.scalar(select(func.max(Prompt.id))) or 0) + 1
        first_generation = (session.scalar(select(func.max(Generation.id))) or 0) + 1
    for offset in range(0, count, BATCH):
        n = min(BATCH, count - offset)
        created = [now - timedelta(minutes=rng.randrange(365 * 24 * 60)) for _ in range(n)]
        owners = [rng.choice(authors) for _ in range(n)]
        prompt_ids = range(first_prompt + offset, first_prompt + offset + n)
        generation_ids = range(first_generation + offset, first_generation + offset + n)
        with storage.db.write() as session:
            session.execute(
                insert(Prompt),
                [
                    {
                        "id": pid,
                        "author_id": owner,
                        "text": caption(rng),
                        "negative_prompt": "",
                        "mix": [],
                        "tags": [],
                        "shared": rng.random() < 0.9,
                        "use_count": rng.randrange(5),
                        "guidance_scale": 0.0,
                        "guidance_decay": "none",
                        "created_at": when,
                        "updated_at": when,
                    }
                    for pid, owner, when in zip(prompt_ids, owners, created, strict=True)
                ],
            )
            session.execute(
                insert(Generation),
                [
                    {
                        "id": gid,
                        "user_id": owner,
                        "prompt_id": pid,
                        "model_id": "embedded",
                        "model_hash": "bench",
                        "params": {"steps": 25},
                        "seed": gid,
                        "status": "succeeded",
                        "created_at": when,
                    }
                    for gid, pid, owner, when in zip(generation_ids, prompt_ids, owners, created, strict=True)
                ],
            )
            session.execute(
                insert(ImageRow),
                [
                    {
                        "generation_id": gid,
                        "index": 0,
                        "sha256": f"{gid:064x}",
                        "relpath": "bench",
                        "width": 64,
                        "height": 64,
                        "review_status": rng.choice(statuses),
                        "file_missing": False,
                        "created_at": when,
                    }
                    for gid, when in zip(generation_ids, created, strict=True)
                ],
            )
    elapsed = time.perf_counter() - start
    print(
        f"bulk load: {count} prompts + generations + image rows in {elapsed:.1f} s "
        f"({count / elapsed:.0f} rows/s)"
    )


def bench_search(storage: Storage, member: int, authors: list[str], searches: int) -> None:
    rng = random.Random(3)
    now = datetime.now(UTC)
    kinds = {
        "one word": lambda: HistoryQuery(text=rng.choice(COLOURS + SHAPES)),
        "two words": lambda: HistoryQuery(text=f"{rng.choice(COLOURS)} {rng.choice(SHAPES)}"),
        "word start": lambda: HistoryQuery(text=rng.choice(SHAPES)[:3]),
        "words + author": lambda: HistoryQuery(text=rng.choice(SHAPES), author=rng.choice(authors)),
        "status + dates": lambda: HistoryQuery(
            review_status=ReviewStatus.PENDING, created_from=now - timedelta(days=30)
        ),
        "no filter, page 50": lambda: HistoryQuery(page=50),
    }
    timings: dict[str, list[float]] = {kind: [] for kind in kinds}
    names = list(kinds)
    for n in range(searches):
        kind = names[n % len(names)]
        query = kinds[kind]()
        start = time.perf_counter()
        storage.history.search(member, query)
        timings[kind].append((time.perf_counter() - start) * 1000)
    everything = [t for values in timings.values() for t in values]
    print(
        f"history search over {storage.history.search(member, HistoryQuery(page_size=1)).total} visible "
        f"generations, {searches} searches, page size 20, count included:"
    )
    print(f"  all: p50 {statistics.median(everything):.1f} ms, p95 {percentile(everything, 95):.1f} ms")
    for kind, values in timings.items():
        print(f"  {kind:<20} p50 {statistics.median(values):6.1f} ms   p95 {percentile(values, 95):6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=100_000)
    parser.add_argument("--generations", type=int, default=200)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument(
        "--data-dir", type=Path, help="where to build the database (default: a temp dir, removed)"
    )
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )
    with tempfile.TemporaryDirectory(prefix="draftroom-bench-") as temp:
        data_dir = args.data_dir or Path(temp)
        with open_storage(data_dir) as storage:
            names = [f"author{n}" for n in range(AUTHORS)]
            ids = [
                storage.users.create(OPERATOR, name, role=Role.MEMBER, password="benchmark password").user.id
                for name in names
            ]
            bench_recording(storage, ids[0], args.generations, args.images, args.size)
            bulk_load(storage, ids, args.prompts)
            bench_search(storage, ids[1], names, args.searches)


if __name__ == "__main__":
    main()
