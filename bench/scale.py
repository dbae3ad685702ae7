"""Scale-out figures of the Ray engine, measured in one run on one model:

1. throughput and p95 latency when 8 and when 32 users ask for one image each at once (one thread each, as
   concurrent HTTP requests), through LocalEngine
   (in this process), and through RayEngine with 1 and with 2 replicas (a local Ray instance, 1 CPU each);
2. RayEngine's overhead against LocalEngine on the same model and load: 8 users at once, one batch of 8.
   LocalEngine and the one-replica RayEngine take turns burst by burst, so both see the same machine load.

Every request asks one decoder candidate per image (``candidates=1``), as bench/engine.py's figures do.
Run with one torch thread per engine, so that one replica gets one core as LocalEngine does:
OMP_NUM_THREADS=1 .venv/bin/python bench/scale.py [--model model/weights/embedded] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.engine import DEFAULT_MODEL, ask, p95
from model.engine import Engine, GenerationRequest
from model.engine.engine_local import LocalEngine

USERS = (8, 32)


@dataclasses.dataclass
class Figure:
    users: int
    images_per_s: float  # the median run's
    p95_latency_s: float  # over every request of every run
    wall_s: float  # the median run's


def burst(engine: Engine, requests: list[GenerationRequest]) -> tuple[float, list[float]]:
    """Every user submits from a thread of their own at once, as the studio's concurrent HTTP requests do;
    (wall seconds until all are done, each request's submit-to-result seconds).

    Not bench/engine.py's one-thread burst: through RayEngine each submit waits for the replica's answer,
    so submits in a row would reach the replica one round trip apart and miss each other's batch."""
    latencies = [0.0] * len(requests)
    ready = threading.Barrier(len(requests) + 1)

    def user(index: int, request: GenerationRequest) -> None:
        ready.wait()
        sent = time.perf_counter()
        engine.submit(request).result()
        latencies[index] = time.perf_counter() - sent

    threads = [threading.Thread(target=user, args=item) for item in enumerate(requests)]
    for thread in threads:
        thread.start()
    ready.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, latencies


def measure(engines: dict[str, Engine], users: int, repeats: int) -> dict[str, Figure]:
    """``users`` ask one image each at once, ``repeats`` times per engine (after one warm-up burst each).

    The engines take turns burst by burst, so on a shared machine they see the same load."""
    walls: dict[str, list[float]] = {name: [] for name in engines}
    latencies: dict[str, list[float]] = {name: [] for name in engines}
    for engine in engines.values():
        burst(engine, [_one(i, f"warm{i}") for i in range(users)])
    for repeat in range(repeats):
        for name, engine in engines.items():
            wall, lat = burst(engine, [_one(repeat * users + i, f"user{i}") for i in range(users)])
            walls[name].append(wall)
            latencies[name] += lat
    return {
        name: Figure(
            users,
            users / statistics.median(walls[name]),
            p95(latencies[name]),
            statistics.median(walls[name]),
        )
        for name in engines
    }


def _one(index: int, user: str) -> GenerationRequest:
    return dataclasses.replace(ask(index, user), candidates=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--repeats", type=int, default=3, help="bursts per figure (default 3)")
    parser.add_argument("--max-batch", type=int, default=8)
    args = parser.parse_args()
    if not args.model.is_dir():
        print(f"No model at {args.model}; pass --model PATH.", file=sys.stderr)
        return 1
    options = {"max_batch": args.max_batch}
    print(
        f"model {args.model}, max batch {args.max_batch}, {os.cpu_count()} CPU cores, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {args.repeats} bursts per figure"
    )
    results: dict[str, list[Figure]] = {}
    local = LocalEngine.from_path(args.model, device="cpu", **options)

    import ray
    from ray import serve

    from model.engine.engine_ray import RayEngine

    ray.init(include_dashboard=False, log_to_driver=False)
    for replicas in (1, 2):
        started = time.perf_counter()
        engine = RayEngine(
            args.model,
            app_name=f"bench-{replicas}",
            replicas=replicas,
            cpus_per_replica=1,
            device="cpu",
            **options,
        )
        print(f"{replicas} replica(s) deployed in {time.perf_counter() - started:.0f}s", flush=True)
        # LocalEngine takes turns with the one-replica deployment: the overhead compares like with like
        engines: dict[str, Engine] = {"LocalEngine (in-process)": local} if replicas == 1 else {}
        engines[f"RayEngine, {replicas} replica(s)"] = engine
        for users in USERS:
            for name, figure in measure(engines, users, args.repeats).items():
                results.setdefault(name, []).append(figure)
                print(f"{name}, {users} users: {figure}", flush=True)
        engine.shutdown()
        serve.delete(f"bench-{replicas}")
    local.shutdown()
    ray.shutdown()

    print()
    print("| engine | users | throughput | p95 latency | burst wall time |")
    print("|---|---|---|---|---|")
    for name, figures in results.items():
        for figure in figures:
            print(
                f"| {name} | {figure.users} | {figure.images_per_s:.2f} img/s | {figure.p95_latency_s:.2f}s | "
                f"{figure.wall_s:.2f}s |"
            )
    local_8 = results["LocalEngine (in-process)"][0]
    ray_8 = results["RayEngine, 1 replica(s)"][0]
    print(
        f"\nRayEngine overhead at batch {args.max_batch} (8 users at once, 1 replica vs LocalEngine): "
        f"{ray_8.wall_s:.3f}s vs {local_8.wall_s:.3f}s = **{100 * (ray_8.wall_s / local_8.wall_s - 1):+.1f}%** "
        "(goal: within 5%)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
