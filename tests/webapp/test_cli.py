"""`app.py serve`: refuses an open unauthenticated bind, bootstraps the first admin, marks jobs a dead
process left behind as interrupted; `--no-auth` on loopback acts as the admin, for local Host names only;
`--allowed-hosts` and `--allowed-origins` set the Host names and other web origins the studio accepts."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
import torch
import uvicorn
from fastapi.testclient import TestClient

import app as draftroom
from storage.types import OPERATOR, GenerationStatus
from tests.webapp.conftest import open_test_storage


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list:
    """Instead of serving forever, keep the app `serve` built (and the arguments it ran uvicorn with)."""
    apps: list = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: apps.append((app, options)))
    return apps


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::"])
def test_no_auth_refuses_a_non_loopback_host(host: str, capsys: pytest.CaptureFixture, served: list) -> None:
    assert draftroom.main(["serve", "--no-auth", "--host", host]) == 2
    assert "loopback" in capsys.readouterr().err and served == []


def test_first_start_creates_admin_with_a_one_time_password(
    tmp_path: Path,
    model_path: Path,
    served: list,
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    assert (
        draftroom.main(["serve", "--data-dir", str(tmp_path), "--model", str(model_path), "--port", "7999"])
        == 0
    )
    [(_, options)] = served
    assert (options["host"], options["port"]) == ("127.0.0.1", 7999)
    printed = capsys.readouterr().out
    password = printed.split("one-time password: ")[1].split()[0]
    assert password not in caplog.text  # printed once for the operator, never logged
    with open_test_storage(tmp_path) as storage:
        admin = storage.users.authenticate("admin", password)
        assert admin.role == "admin" and admin.must_change_password
    assert draftroom.main(["serve", "--data-dir", str(tmp_path), "--model", str(model_path)]) == 0
    assert "one-time password" not in capsys.readouterr().out  # only on the very first start


def test_a_restart_marks_unfinished_jobs_interrupted(tmp_path: Path, model_path: Path, served: list) -> None:
    with open_test_storage(tmp_path) as storage:
        user = storage.users.create(OPERATOR, "ada", password="correct-horse-1").user
        prompt = storage.prompts.create(user.id, text="a red circle")
        queued, running, finished = (
            storage.generations.create(user.id, prompt.id, model_id="m", model_hash="h", params={})
            for _ in range(3)
        )
        storage.generations.mark_running(running.id)
        storage.generations.mark_failed(finished.id, "boom")
    assert draftroom.main(["serve", "--data-dir", str(tmp_path), "--model", str(model_path)]) == 0
    with open_test_storage(tmp_path) as storage:
        statuses = [storage.generations.get(user.id, g.id).status for g in (queued, running, finished)]
    assert statuses == [GenerationStatus.INTERRUPTED, GenerationStatus.INTERRUPTED, GenerationStatus.FAILED]


def test_the_instance_id_names_this_front_end_and_its_jobs(
    tmp_path: Path, model_path: Path, served: list, capsys: pytest.CaptureFixture
) -> None:
    common = ["serve", "--data-dir", str(tmp_path), "--model", str(model_path)]
    assert draftroom.main([*common, "--port", "7999"]) == 0
    assert draftroom.main([*common, "--instance-id", "fe-1"]) == 0
    (default, _), (named, _) = served
    assert default.state.studio.jobs.frontend_id == f"{socket.gethostname()}:7999"  # stable across restarts
    assert named.state.studio.jobs.frontend_id == "fe-1"
    assert draftroom.main([*common, "--instance-id", "x" * 65]) == 2
    assert "--instance-id" in capsys.readouterr().err


def test_no_auth_on_loopback_acts_as_the_admin(tmp_path: Path, model_path: Path, served: list) -> None:
    assert (
        draftroom.main(["serve", "--no-auth", "--data-dir", str(tmp_path), "--model", str(model_path)]) == 0
    )
    [(app, _)] = served
    with TestClient(app, base_url="http://127.0.0.1:7860") as client:
        me = client.get("/api/v1/me")
        assert me.status_code == 200 and me.json()["name"] == "admin" and me.json()["role"] == "admin"
        assert client.get("/api/v1/users").status_code == 200
        assert client.get("/api/v1/me", headers={"Authorization": "Bearer dr_wrong"}).status_code == 401


def test_an_admin_sets_the_per_user_queue_limits_at_serve(
    tmp_path: Path, model_path: Path, served: list, capsys: pytest.CaptureFixture
) -> None:
    assert (
        draftroom.main(
            [
                "serve",
                "--data-dir",
                str(tmp_path),
                "--model",
                str(model_path),
                "--max-user-jobs",
                "3",
                "--max-user-images",
                "5",
            ]
        )
        == 0
    )
    [(app, _)] = served
    engine = app.state.studio.engine
    assert (engine.max_user_jobs, engine.max_user_images, engine.max_queue) == (3, 5, 64)
    assert draftroom.main(["serve", "--max-user-jobs", "0"]) == 2
    assert "--max-user-jobs" in capsys.readouterr().err


def test_precision_and_device_flags_reach_the_engine(
    tmp_path: Path, model_path: Path, served: list, capsys: pytest.CaptureFixture
) -> None:
    serve = ["serve", "--data-dir", str(tmp_path), "--model", str(model_path), "--device", "cpu"]
    assert draftroom.main([*serve, "--dtype", "bf16", "--channels-last", "--max-batch", "4"]) == 0
    [(app, _)] = served
    engine = app.state.studio.engine
    assert (engine.model_info.device, engine.model_info.dtype, engine.max_batch) == ("cpu", "bfloat16", 4)
    conv = next(p for p in engine._family.decoder.unet.parameters() if p.dim() == 4)
    assert conv.dtype is torch.bfloat16 and conv.is_contiguous(memory_format=torch.channels_last)
    engine.shutdown()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--cpu-offload"], "error: --cpu-offload keeps weights in CPU memory"),
        (["--dtype", "fp16"], "error: --dtype fp16 on the CPU"),
        (["--compile", "--cpu-offload"], "error: --cpu-offload"),
    ],
)
def test_device_flags_this_machine_rules_out_stop_serve_with_the_flag_named(
    tmp_path: Path, served: list, capsys: pytest.CaptureFixture, flags: list[str], message: str
) -> None:
    assert draftroom.main(["serve", "--data-dir", str(tmp_path), "--device", "cpu", *flags]) == 2
    assert capsys.readouterr().err.startswith(message) and served == []
    assert not (tmp_path / "draftroom.db").exists(), "refused before the data directory is opened"


def test_model_takes_a_name_pulled_into_the_data_dir(
    tmp_path: Path,
    model_path: Path,
    served: list,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture,
) -> None:
    assert draftroom.main(["serve", "--data-dir", str(tmp_path), "--model", "tiny"]) == 2
    assert "--model: no model folder" in capsys.readouterr().err and served == []
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny").symlink_to(model_path, target_is_directory=True)
    caplog.set_level(logging.INFO, logger="draftroom")
    assert draftroom.main(["serve", "--data-dir", str(tmp_path), "--model", "tiny"]) == 0
    assert len(served) == 1 and f"loading the model from {tmp_path / 'models' / 'tiny'}" in caplog.text


def test_no_auth_answers_only_local_host_names(tmp_path: Path, model_path: Path, served: list) -> None:
    assert (
        draftroom.main(["serve", "--no-auth", "--data-dir", str(tmp_path), "--model", str(model_path)]) == 0
    )
    [(app, _)] = served
    for host in ("localhost:7860", "127.0.0.1"):
        assert TestClient(app, base_url=f"http://{host}").get("/api/v1/me").status_code == 200, host
    assert TestClient(app, base_url="http://rebound.example:7860").get("/api/v1/me").status_code == 400


def test_allowed_hosts_and_origins(tmp_path: Path, model_path: Path, served: list) -> None:
    assert (
        draftroom.main(
            [
                "serve",
                "--data-dir",
                str(tmp_path),
                "--model",
                str(model_path),
                "--allowed-hosts",
                "studio.example",
                "*.team.example",
                "--allowed-origins",
                "https://wiki.example",
            ]
        )
        == 0
    )
    [(app, _)] = served
    for host in ("studio.example", "ui.team.example"):
        assert TestClient(app, base_url=f"http://{host}").get("/api/v1/me").status_code == 401, host
    assert (
        TestClient(app, base_url="http://127.0.0.1").get("/api/v1/me").status_code == 400
    )  # the list replaces
    wiki = TestClient(app, base_url="http://studio.example", headers={"Origin": "https://wiki.example"})
    assert wiki.get("/api/v1/me").headers["access-control-allow-origin"] == "https://wiki.example"


def test_no_auth_refuses_any_host(capsys: pytest.CaptureFixture, served: list) -> None:
    assert draftroom.main(["serve", "--no-auth", "--allowed-hosts", "*"]) == 2
    assert "--allowed-hosts" in capsys.readouterr().err and served == []


def test_the_default_engine_is_local_and_never_imports_ray() -> None:
    """`make run` installs no Ray: serving with the local engine must not need it."""
    import subprocess
    import sys

    code = (
        "import sys, app; args = app.build_parser().parse_args(['serve']); "
        "import webapp.server, model.engine.engine_local; "
        "assert args.engine == 'local', args.engine; assert 'ray' not in sys.modules, 'ray imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(draftroom.__file__).parent)


def test_engine_ray_passes_the_scaling_flags_to_the_ray_engine(
    tmp_path: Path, model_path: Path, served: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install -r requirements-ray.txt")
    import model.engine.engine_ray
    from model.device_options import DeviceOptions
    from model.engine import LocalEngine

    made: list[tuple[Path, dict]] = []

    def ray_engine(model: Path, **options: object) -> LocalEngine:  # stands in: no cluster needed here
        made.append((model, options))
        return LocalEngine.from_path(model, device="cpu")

    monkeypatch.setattr(model.engine.engine_ray, "RayEngine", ray_engine)
    flags = ["--engine", "ray", "--ray-address", "head:6379", "--min-replicas", "2", "--max-replicas", "4"]
    flags += ["--gpus-per-replica", "0.5", "--cpus-per-replica", "2", "--max-batch", "4"]
    assert draftroom.main(["serve", "--data-dir", str(tmp_path), "--model", str(model_path), *flags]) == 0
    [(model, options)] = made
    assert model == model_path and options == {
        "address": "head:6379",
        "replicas": 1,
        "min_replicas": 2,
        "max_replicas": 4,
        "gpus_per_replica": 0.5,
        "cpus_per_replica": 2.0,
        "device": None,
        "dtype": None,
        "device_options": DeviceOptions(),
        "max_batch": 4,
        "max_queue": 64,
        "max_user_jobs": 8,
        "max_user_images": 32,
    }
    served[0][0].state.studio.engine.shutdown(wait=True)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--min-replicas", "2"], "min_replicas and max_replicas go together"),
        (["--min-replicas", "3", "--max-replicas", "2"], "1 <= min_replicas <= max_replicas"),
        (["--replicas", "0"], "replicas must be at least 1"),
        (["--cpus-per-replica", "-1"], "cpus_per_replica"),
    ],
)
def test_engine_ray_refuses_bad_scaling_flags_before_starting_ray(
    flags: list[str],
    named: str,
    tmp_path: Path,
    model_path: Path,
    served: list,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install -r requirements-ray.txt")
    import ray
    from ray import serve

    started: list[str] = []
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: started.append("ray.init"))
    monkeypatch.setattr(serve, "start", lambda *args, **kwargs: started.append("serve.start"))
    args = ["serve", "--data-dir", str(tmp_path), "--model", str(model_path), "--engine", "ray", *flags]
    assert draftroom.main(args) == 2
    assert named in capsys.readouterr().err and served == [] and started == []
