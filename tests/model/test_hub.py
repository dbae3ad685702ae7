"""`app.py models pull|list|remove` against a local fake Hub (tests/model/fake_hub.py), never the network:
what is fetched (configs, tokenizer files, full-precision safetensors), what is refused (pickle-only repos),
a cut download that resumes, the Kandinsky 2.2 alias, and `serve --model NAME` resolution."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_hub import FakeHub
from huggingface_hub import constants
from tiny_models import build_kandinsky22, build_stable_diffusion

import app as draftroom
from model.families import load_family
from model.hub import HubError, list_models, resolve_model, select_files, served_model_summary

UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Hub repos as folders: a diffusers SD model with decoys beside it, a pickle-only copy, Kandinsky 2.2's two."""
    root = tmp_path_factory.mktemp("hub")
    sd = build_stable_diffusion(root / "sd")
    (sd / "README.md").write_text("---\nlicense: mit\n---\n")
    (sd / "v1-5-pruned.safetensors").write_bytes(b"single-file checkpoint at the repo root")
    (sd / "unet/diffusion_pytorch_model.fp16.safetensors").write_bytes(b"a variant copy")
    (sd / "unet/diffusion_pytorch_model.bin").write_bytes(b"pickle beside the safetensors")
    pickled = shutil.copytree(sd, root / "pickled", ignore=shutil.ignore_patterns("*.safetensors"))
    for weights in (sd / "unet", sd / "vae", sd / "text_encoder"):
        name = "pytorch_model.bin" if weights.name == "text_encoder" else "diffusion_pytorch_model.bin"
        (pickled / weights.name / name).write_bytes(b"pickle only")
    kandinsky = build_kandinsky22(root / "kandinsky")
    return {
        "tiny/sd": sd,
        "tiny/pickled": pickled,
        "kandinsky-community/kandinsky-2-2-prior": kandinsky / "prior",
        "kandinsky-community/kandinsky-2-2-decoder": kandinsky / "decoder",
    }


@pytest.fixture
def hub(repos: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """The fake Hub, with huggingface_hub pointed at it (what HF_ENDPOINT does at import) and online."""
    with FakeHub(repos).running() as fake:
        monkeypatch.setattr(constants, "ENDPOINT", fake.endpoint)
        monkeypatch.setattr(
            constants,
            "HUGGINGFACE_CO_URL_TEMPLATE",
            fake.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        )
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        yield fake


def models(data: Path, *args: str) -> int:
    return draftroom.main(["models", *args, "--data-dir", str(data)])


def test_pull_fetches_configs_and_full_safetensors_only_then_loads(
    hub: FakeHub, repos: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert models(tmp_path, "pull", "tiny/sd", "--device", "cpu") == 0
    assert "loads as stable-diffusion" in capsys.readouterr().out
    source = repos["tiny/sd"]
    expected = {
        f.relative_to(source).as_posix()
        for f in source.rglob("*")
        if f.suffix in (".json", ".txt")
        or (f.suffix == ".safetensors" and f.parent != source and ".fp16." not in f.name)
    }
    assert hub.fetched("tiny/sd") == expected  # no root checkpoint, no fp16 variant, no pickle, no README
    folder = tmp_path / "models" / "sd"
    assert (folder / UNET_WEIGHTS).read_bytes() == (source / UNET_WEIGHTS).read_bytes()
    info = load_family(folder, device="cpu").info
    summary = served_model_summary(info, tmp_path)
    assert summary["served"] == {
        "name": "sd",
        "family": "stable-diffusion",
        "hash": info.hash,
        "device": "cpu",
        "dtype": "float32",
    }
    assert [(m["name"], m["family"]) for m in summary["available"]] == [("sd", "stable-diffusion")]

    assert models(tmp_path, "list") == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split() == ["NAME", "SIZE", "FAMILY"] and listed[1].split()[::3] == [
        "sd",
        "stable-diffusion",
    ]
    [entry] = list_models(tmp_path)
    assert entry.size_bytes == sum((source / file).stat().st_size for file in expected)


def test_a_pickle_only_repo_is_refused_before_any_download(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert models(tmp_path, "pull", "tiny/pickled", "--name", "p") == 1
    error = capsys.readouterr().err
    assert "pickle" in error and "text_encoder/ (pytorch_model.bin)" in error and "unet/" in error
    assert hub.fetched("tiny/pickled") == set() and not (tmp_path / "models" / "p").exists()


def test_a_download_cut_mid_file_resumes_where_it_stopped(
    hub: FakeHub, repos: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        constants, "DOWNLOAD_CHUNK_SIZE", 4096
    )  # written in 4 KiB chunks, as a real file in 10 MB ones
    hub.cuts[f"tiny/sd/{UNET_WEIGHTS}"] = 1
    assert models(tmp_path, "pull", "tiny/sd", "--name", "resumed", "--device", "cpu") == 0
    size = (repos["tiny/sd"] / UNET_WEIGHTS).stat().st_size
    [first, second] = unet_ranges(hub)
    assert (
        first is None and 0 < resumed_at(second) <= size // 2
    )  # the second request asks only for what is missing
    assert (tmp_path / "models/resumed" / UNET_WEIGHTS).read_bytes() == (
        repos["tiny/sd"] / UNET_WEIGHTS
    ).read_bytes()


def test_a_failed_pull_is_finished_by_the_next_pull_without_refetching(
    hub: FakeHub,
    repos: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 4096)
    hub.cuts[f"tiny/sd/{UNET_WEIGHTS}"] = 6  # half the file, then every resume attempt (5) hangs up at once
    assert models(tmp_path, "pull", "tiny/sd", "--device", "cpu") == 1
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "models/sd" / UNET_WEIGHTS).exists()
    assert len(hub.fetched("tiny/sd")) == 10
    hub.requests.clear()
    assert models(tmp_path, "pull", "tiny/sd", "--device", "cpu") == 0
    # the files the first pull finished are kept; the cut one starts over (huggingface_hub keeps no partial file)
    assert hub.fetched("tiny/sd") == {UNET_WEIGHTS}
    assert (tmp_path / "models/sd" / UNET_WEIGHTS).read_bytes() == (
        repos["tiny/sd"] / UNET_WEIGHTS
    ).read_bytes()


def unet_ranges(hub: FakeHub) -> list[str | None]:
    """The Range header of each GET of the UNet's weights."""
    return [r for method, url, r in hub.requests if method == "GET" and url.endswith(UNET_WEIGHTS)]


def resumed_at(range_header: str | None) -> int:
    return int(range_header.removeprefix("bytes=").removesuffix("-")) if range_header else 0


def test_the_kandinsky_alias_pulls_prior_and_decoder_into_one_folder(hub: FakeHub, tmp_path: Path) -> None:
    assert (
        models(tmp_path, "pull", "kandinsky-2.2", "--revision", "v1") == 1
    )  # one revision cannot name two repos
    assert models(tmp_path, "pull", "kandinsky-2.2", "--device", "cpu") == 0
    folder = tmp_path / "models" / "kandinsky-2.2"
    assert (folder / "prior" / "model_index.json").is_file() and (
        folder / "decoder" / "model_index.json"
    ).is_file()
    assert [(m.name, m.family) for m in list_models(tmp_path)] == [("kandinsky-2.2", "kandinsky22")]
    assert load_family(folder, device="cpu").info.family == "kandinsky22"


def test_unknown_repos_and_non_diffusers_repos_fail_with_a_message(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert models(tmp_path, "pull", "tiny/missing") == 1
    assert "error:" in capsys.readouterr().err
    with pytest.raises(HubError, match=r"model_index\.json"):
        select_files("tiny/ckpt", ["v1-5-pruned.safetensors", "README.md"])
    assert models(tmp_path, "pull", "tiny/sd", "--name", "../outside") == 1
    assert "NAME" in capsys.readouterr().err


def test_remove_deletes_a_model_and_refuses_paths_outside_the_models_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = tmp_path / "models"
    (root / "sd" / "unet").mkdir(parents=True)
    (root / "sd" / "unet" / "w.safetensors").write_bytes(b"x")
    outside = tmp_path / "precious"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    (root / "broken").mkdir()
    (root / "broken" / "model_index.json").write_text("{not json")
    assert [(m.name, m.family) for m in list_models(tmp_path)] == [
        ("broken", None),
        ("link", None),
        ("sd", None),
    ]
    for name in ("../precious", "link", "", "missing"):
        assert models(tmp_path, "remove", name) == 1
        assert "error:" in capsys.readouterr().err
    assert outside.is_dir()
    assert models(tmp_path, "remove", "sd") == 0 and not (root / "sd").exists()


def test_serve_model_takes_a_name_under_the_models_folder_or_a_path(tmp_path: Path) -> None:
    named = tmp_path / "models" / "sd"
    named.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"")
    assert resolve_model("sd", tmp_path) == named
    assert resolve_model(str(elsewhere), tmp_path) == elsewhere
    assert resolve_model(str(checkpoint), tmp_path) == checkpoint
    with pytest.raises(HubError, match="no model"):
        resolve_model("nothing", tmp_path)
