"""python -m model generate, end to end on a tiny model folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import PIL.Image
import pytest
import tiny_models

from model.__main__ import main
from storage.metadata import read_png_metadata


def test_generate_writes_images_and_meta(kandinsky_path: Path, tmp_path: Path) -> None:
    reference = tmp_path / "ref.png"
    PIL.Image.new("RGB", (48, 48), "blue").save(reference)
    out = tmp_path / "out"
    code = main(
        [
            "generate",
            "--model",
            str(kandinsky_path),
            "--out",
            str(out),
            "--prompt",
            "a red circle",
            "--negative",
            "green",
            "--seed",
            "7",
            "--num-images",
            "2",
            "--steps",
            "2",
            "--scheduler",
            "ddim",
            "--guidance-image",
            str(reference),
            "--image-guidance-scale",
            "0.3",
            "--image-guidance-decay",
            "cosine",
            "--mix",
            "red=-1",
            "--mix",
            "blue=1",
            "--mix",
            f"{reference}=0.5",
        ]
    )
    assert code == 0
    records = json.loads((out / "meta.json").read_text())
    assert [r["file"] for r in records] == ["000.png", "001.png"] and [r["seed"] for r in records] == [7, 8]
    first = records[0]
    assert first["prompt"] == "a red circle" and first["negative_prompt"] == "green"
    assert (first["steps"], first["scheduler"], first["width"], first["height"]) == (2, "ddim", 32, 32)
    assert (first["image_guidance_scale"], first["image_guidance_decay"]) == (0.3, "cosine")
    assert [m.get("text") for m in first["mix"]] == ["red", "blue", None] and first["mix"][2]["image"] == str(
        reference
    )
    assert first["model_name"] == "tiny-embedded" and len(first["model_hash"]) == 64
    assert first["model_hash_short"] == first["model_hash"][:10] and first["model_s"] > 0
    assert first["candidates"] == 1  # the model's default: it has no verifier
    recipe = read_png_metadata((out / "001.png").read_bytes())
    assert (recipe.seed, recipe.prompt, recipe.model_hash) == (8, "a red circle", first["model_hash_short"])
    assert recipe.guidance["decay"] == "cosine" and len(recipe.mix) == 3
    assert PIL.Image.open(out / "000.png").size == (32, 32)


def test_upscale_writes_the_4x_picture_and_records_the_flag(tiny_root: Path, kandinsky_path: Path) -> None:
    model = tiny_root / "cli-upscaling"
    if not model.exists():
        shutil.copytree(kandinsky_path, model)
        tiny_models.add_upsampler(model)
    outputs = []
    for run in ("a", "b"):
        out = tiny_root / f"cli-upscaled-{run}"
        args = [
            "generate",
            "--model",
            str(model),
            "--out",
            str(out),
            "--prompt",
            "a red circle",
            "--seed",
            "4",
        ]
        assert main([*args, "--steps", "2", "--upscale"]) == 0
        outputs.append(out)
    first, again = outputs
    assert json.loads((first / "meta.json").read_text())[0]["upscale"] is True
    with PIL.Image.open(first / "000.png") as image:
        assert image.size == (128, 128)
    recipe = read_png_metadata((first / "000.png").read_bytes())
    assert (recipe.width, recipe.height, recipe.params["upscale"]) == (128, 128, True)
    assert recipe.settings()["Upscale"] == "32x32 -> 128x128"
    with PIL.Image.open(first / "000.png") as a, PIL.Image.open(again / "000.png") as b:
        assert a.tobytes() == b.tobytes(), "the recipe's seed reproduces the upscaled picture"


def test_mix_alone_needs_no_prompt(kandinsky_path: Path, tmp_path: Path) -> None:
    assert (
        main(
            [
                "generate",
                "--model",
                str(kandinsky_path),
                "--out",
                str(tmp_path),
                "--mix",
                "a red circle=1",
                "--mix",
                "blue=0.5",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "meta.json").read_text())[0]["prompt"] == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompt", "x", "--steps", "0"], "error: --steps: must be between 1 and 150"),
        (["--prompt", "x", "--width", "64", "--height", "64"], "error: --width: 64x64 is not a size"),
        (["--prompt", "x", "--mix", "red"], "error: --mix: 'red' must be SPEC=WEIGHT"),
        (["--prompt", "x", "--mix", "red=11"], "error: --mix #1 weight: must be between"),
        (["--prompt", ""], "error: --prompt: is empty"),
        (
            ["--prompt", "x", "--guidance-image", "/nonexistent.png"],
            "error: --guidance-image: cannot read image",
        ),
        (
            ["--prompt", "x", "--candidates", "2"],
            "error: --candidates: must be 1: this model has no verifier",
        ),
        (["--prompt", "x", "--device", "cpu", "--cpu-offload"], "error: --cpu-offload keeps weights"),
        (["--prompt", "x", "--device", "cpu", "--dtype", "fp16"], "error: --dtype fp16 on the CPU"),
        (["--prompt", "x", "--upscale"], "error: --upscale: this model (tiny-embedded) has no upsampler"),
    ],
)
def test_bad_input_exits_nonzero_with_one_clear_line(
    kandinsky_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["generate", "--model", str(kandinsky_path), "--out", str(tmp_path / "o"), *args]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message)
    assert not (tmp_path / "o").exists()


def test_missing_model_folder_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "model",
            "generate",
            "--prompt",
            "x",
            "--model",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: model folder not found")
