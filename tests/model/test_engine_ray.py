"""RayEngine on a local Ray instance with two replicas of the tiny model (1 CPU each): both serve under
concurrent load, a cancel reaches the replica that runs the job, the health endpoint shows the replicas, and
a killed replica fails only its own jobs while Serve replaces it.

The interface every engine meets is tested on RayEngine too, in test_engine_contract.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from model.engine import GenerationRequest, JobFailed, JobHandle, JobStatus
from model.engine.engine_ray import DEPLOYMENT, RayEngine
from model.engine.request_fields import MAX_STEPS

APP = "draftroom-scale"


def ask(prompt: str, seed: int, user: str, **fields: object) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, seed=seed, user=user, **{"steps": 2, **fields})  # type: ignore[arg-type]


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def engine(ray_instance: None, kandinsky_path: Path) -> Iterator[RayEngine]:
    from ray import serve

    made = RayEngine(kandinsky_path, app_name=APP, replicas=2, cpus_per_replica=1, device="cpu")
    wait_for(lambda: len(made.status().replicas) == 2)
    yield made
    made.shutdown(wait=False)
    serve.delete(APP)


def test_two_replicas_both_serve_jobs_under_concurrent_load(engine: RayEngine) -> None:
    before = {replica.id: replica.succeeded for replica in engine.status().replicas}
    handles: list[JobHandle] = []
    lock = threading.Lock()

    def user(name: str) -> None:
        for seed in range(2):
            handle = engine.submit(ask(f"a red circle by {name}", seed, name))
            with lock:
                handles.append(handle)

    threads = [threading.Thread(target=user, args=(f"user{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(len(handle.result(120).images) == 1 for handle in handles)
    used = {handle.replica for handle in handles}  # type: ignore[attr-defined]
    assert used == set(before), "both replicas took jobs"
    after = {replica.id: replica.succeeded for replica in engine.status().replicas}
    assert sum(after.values()) - sum(before.values()) == 16
    assert all(after[replica] > before[replica] for replica in before)


def test_a_cancel_reaches_the_replica_that_runs_the_job(engine: RayEngine) -> None:
    job = engine.submit(ask("long", 1, "canceller", steps=MAX_STEPS))
    wait_for(lambda: job.progress().step >= 1)
    replica = job.replica  # type: ignore[attr-defined]

    def on_replica() -> tuple[int, int]:
        [mine] = [r for r in engine.status().replicas if r.id == replica]
        return mine.running_jobs, mine.cancelled

    running, cancelled = on_replica()
    assert running == 1
    assert job.cancel()
    wait_for(lambda: on_replica() == (0, cancelled + 1), timeout=10)


def test_health_shows_the_engine_kind_and_each_replica(engine: RayEngine, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from storage import open_storage
    from webapp.server import create_app

    with open_storage(tmp_path) as storage:
        app = create_app(storage, engine, allowed_hosts=["testserver"])
        body = TestClient(app).get("/api/v1/health").json()
    assert body["status"] == "ok" and body["engine"]["kind"] == "ray"
    assert body["engine"]["state"] == "HEALTHY" and body["engine"]["replica_states"] == {"RUNNING": 2}
    replicas = body["engine"]["replicas"]
    assert len(replicas) == 2 and {replica["state"] for replica in replicas} == {"RUNNING"}
    assert set(replicas[0]) == {
        "id",
        "state",
        "running_jobs",
        "queued_jobs",
        "succeeded",
        "failed",
        "cancelled",
    }, "counts only: nothing that names a user, a job or an address"


def test_a_killed_replica_fails_only_its_own_jobs_and_the_engine_recovers(engine: RayEngine) -> None:
    import ray

    victim = engine.submit(ask("victim", 1, "victim", steps=MAX_STEPS))
    wait_for(lambda: victim.progress().step >= 1)
    lost = victim.replica  # type: ignore[attr-defined]
    others = [engine.submit(ask(f"bystander {n}", n, f"bystander{n}")) for n in range(6)]
    ray.kill(ray.get_actor(f"SERVE_REPLICA::{APP}#{DEPLOYMENT}#{lost}", namespace="serve"))

    with pytest.raises(JobFailed, match=f"model replica {lost} running this job stopped"):
        victim.result(60)
    for handle in others:
        if handle.replica == lost:  # type: ignore[attr-defined]
            with pytest.raises(JobFailed, match="stopped"):
                handle.result(60)
        else:
            assert handle.result(60).images, "the other replica's jobs are untouched"
    assert victim.progress().status is JobStatus.FAILED

    wait_for(lambda: len({r.id for r in engine.status().replicas} - {lost}) == 2, timeout=180)
    fresh = [engine.submit(ask(f"after {n}", n, f"after{n}")) for n in range(4)]
    assert all(handle.result(60).images for handle in fresh), "the engine serves again"


def test_the_kubernetes_ray_service_builds_the_application_it_names() -> None:
    """deploy/kubernetes/rayservice.yaml imports ``build_app`` with its args: they must build the deployment
    the manifest describes (replicas, resources), or a cluster would fail at deploy time."""
    import importlib

    import yaml
    from ray.serve import Application

    manifest = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "rayservice.yaml"
    (application,) = yaml.safe_load(yaml.safe_load(manifest.read_text())["spec"]["serveConfigV2"])[
        "applications"
    ]
    module, name = application["import_path"].split(":")
    built = getattr(importlib.import_module(module), name)(application["args"])
    assert isinstance(built, Application)
    deployment = built._bound_deployment  # the deployment the application binds (Serve's own attribute)
    assert deployment.num_replicas == application["args"]["replicas"]
    assert deployment.ray_actor_options["num_gpus"] == application["args"]["gpus_per_replica"]
    with pytest.raises(ValueError, match="unknown"):
        getattr(importlib.import_module(module), name)({**application["args"], "replica": 3})
