"""Tiny random model folders of every family, built once per test session, and loaded families.

Loading is the slow part (~1 s per family), so the loaded families are shared; each test makes its own
engine around one (an engine's worker owns the family only while the engine runs).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tiny_models

from model.families import Family, load_family

TINY_SETTINGS = {
    "name": "tiny-embedded",
    "default_steps": 2,
    "default_guidance": 4.0,
    "sizes": [[32, 32]],
    "prior_steps": 2,
}


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def kandinsky_path(tiny_root: Path) -> Path:
    return tiny_models.build_kandinsky22(tiny_root / "embedded", draftroom_json=TINY_SETTINGS)


@pytest.fixture(scope="session")
def sd_path(tiny_root: Path) -> Path:
    return tiny_models.build_stable_diffusion(tiny_root / "sd")


@pytest.fixture(scope="session")
def sd_ip_path(tiny_root: Path) -> Path:
    return tiny_models.add_ip_adapter(tiny_models.build_stable_diffusion(tiny_root / "sd-ip"))


@pytest.fixture(scope="session")
def sdxl_path(tiny_root: Path) -> Path:
    return tiny_models.build_stable_diffusion_xl(tiny_root / "sdxl")


@pytest.fixture(scope="session")
def kandinsky(kandinsky_path: Path) -> Family:
    return load_family(kandinsky_path, device="cpu")


@pytest.fixture(scope="session")
def sd(sd_path: Path) -> Family:
    return load_family(sd_path, device="cpu")


@pytest.fixture(scope="session")
def sd_ip(sd_ip_path: Path) -> Family:
    return load_family(sd_ip_path, device="cpu")


@pytest.fixture(scope="session")
def sdxl(sdxl_path: Path) -> Family:
    return load_family(sdxl_path, device="cpu")


@pytest.fixture
def engine_for() -> Iterator:
    """Make LocalEngines that are shut down (and their queues cancelled) when the test ends."""
    from model.engine import LocalEngine

    engines: list[LocalEngine] = []

    def make(family: Family, **options: float) -> LocalEngine:
        engine = LocalEngine(family, **options)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.shutdown(wait=False)
        engine._thread.join(timeout=30)


@pytest.fixture(scope="session")
def ray_instance() -> Iterator[None]:
    """One local Ray instance for the session's Ray engine tests (2 logical CPUs: one per tiny replica).

    Skips only where Ray Serve is not installed (``requirements-ray.txt``; ``make test`` installs it)."""
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install -r requirements-ray.txt")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    from ray import serve

    serve.shutdown()
    ray.shutdown()
