"""bench/gpu.py --smoke: the real-size configs (SD 1.5, SDXL, Kandinsky 2.2) build, match the published parameter
counts, and SD 1.5's real-size components run through the engine on the CPU, so the GPU benchmark can run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import PIL.Image
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_smoke_runs_real_size_sd15_through_the_engine(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    report = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert report["params_off_published"] == []
    assert report["params_m"]["sd15/unet"] == pytest.approx(859.52, abs=0.01)  # the real UNet, not a tiny one
    assert report["params_m"]["sdxl/unet"] == pytest.approx(2567.46, abs=0.01)
    (sd15,) = report["families"]
    assert (sd15["family"], sd15["size"], sd15["steps"], sd15["batch"]) == ("sd15", 64, 2, 2)
    assert set(sd15["figures"]) == {"raw_b1", "engine_b1", "users_batching"} and sd15["skipped"] == []
    assert all(figure["s_per_image"] > 0 for figure in sd15["figures"].values())

    images = sorted(tmp_path.glob("smoke_sd15_*.png"))
    assert len(images) == 2  # two users' jobs, drawn as one batch
    for path in images:
        with PIL.Image.open(path) as image:
            assert image.size == (64, 64)

    table = (tmp_path / "gpu_bench.md").read_text()
    assert "| sd15 | 64 px, 2 |" in table
    assert "Skipped" not in table


def test_the_table_names_dtype_and_options_and_the_batches_held_smaller_for_memory(tmp_path: Path) -> None:
    from bench.gpu import FamilyResult, Figure, runtime_label, write
    from model.device_options import DeviceOptions

    assert runtime_label(DeviceOptions()) == "SDPA"
    assert runtime_label(DeviceOptions(compile=True, channels_last=True)) == "SDPA + compiled + channels_last"
    result = FamilyResult(
        family="sdxl",
        size=1024,
        steps=30,
        guidance=5.0,
        batch=8,
        params_m={},
        weights_gib=None,
        figures={"engine_b1": Figure(1.5, 9.0)},
        row_caps={"(1024, 1024, 30, 'ddim', False)": 4},
    )
    meta = {"card": "NVIDIA H200", "torch": "2.13", "dtype": "float16", "weights": "random-init"}
    write(tmp_path, [result], {}, {**meta, "runtime": runtime_label(DeviceOptions(compile=True))})
    table = (tmp_path / "gpu_bench.md").read_text()
    assert table.startswith("NVIDIA H200, torch 2.13, float16, SDPA + compiled, CFG on")
    assert "the engine held these batches smaller: sdxl (1024, 1024, 30, 'ddim', False) at 4 rows" in table
    assert json.loads((tmp_path / "gpu_bench.json").read_text())["families"][0]["row_caps"] == {
        "(1024, 1024, 30, 'ddim', False)": 4
    }
