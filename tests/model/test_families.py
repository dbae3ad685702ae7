"""Every family loads from a tiny folder of its real layout and generates; loading rules hold."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import PIL.Image
import pytest
import tiny_models
import torch
from image_checks import max_pixel_diff, mean_pixel_diff

from model.engine.engine_common import GenerationRequest, MixIngredient, RequestError
from model.engine.validation import resolve_request
from model.families import Family, Kandinsky22Family, ModelLoadError, Row, load_family
from model.families.kandinsky22 import CANDIDATE_SEED_STRIDE
from model.families.loading import model_hash, pick_device
from model.mixing import mix_embeddings, mix_token_states

BLUE = PIL.Image.new("RGB", (40, 40), (20, 40, 220))


def rows_for(family: Family, **fields: object) -> list[Row]:
    request = resolve_request(GenerationRequest(**{"steps": 2, "seed": 3, **fields}), family.info)  # type: ignore[arg-type]
    family.check_request(request)
    return [Row(request, index) for index in range(request.num_images)]


@pytest.mark.parametrize("name", ["kandinsky", "sd", "sdxl", "sd_ip"])
def test_each_family_loads_and_generates(name: str, request: pytest.FixtureRequest) -> None:
    family: Family = request.getfixturevalue(name)
    images = family.generate(rows_for(family, prompt="a red circle on a white background", num_images=2))
    assert [image.size for image in images] == [family.info.default_size] * 2
    assert max_pixel_diff(images[0], images[1]) > 0, "each image has its own seed"
    again = family.generate(rows_for(family, prompt="a red circle on a white background", num_images=1))
    assert max_pixel_diff(images[0], again[0]) == 0, "a seed reproduces its image"
    info = family.info
    assert len(info.hash) == 64 and info.short_hash == info.hash[:10]
    assert info.device == "cpu" and info.dtype == "float32"
    assert {"ddpm", "ddim", "dpmpp"} <= set(info.schedulers)


def test_family_names_and_defaults(kandinsky: Family, sd: Family, sdxl: Family, sd_ip: Family) -> None:
    assert (kandinsky.info.family, kandinsky.info.name, kandinsky.info.default_steps) == (
        "kandinsky22",
        "tiny-embedded",
        2,
    )
    assert kandinsky.info.sizes == ((32, 32),) and kandinsky.info.prior_steps == 2
    assert (sd.info.family, sd.info.default_scheduler, sd.info.default_steps) == (
        "stable-diffusion",
        "pndm",
        30,
    )
    assert (sdxl.info.family, sdxl.info.default_scheduler) == ("stable-diffusion-xl", "eulerdiscrete")
    assert not sd.info.image_ingredients and sd_ip.info.image_ingredients


def test_kandinsky_without_draftroom_json_uses_family_defaults(tmp_path: Path) -> None:
    family = load_family(tiny_models.build_kandinsky22(tmp_path / "k22"), device="cpu")
    assert (family.info.default_steps, family.info.default_guidance, family.info.prior_steps) == (50, 4.0, 25)
    assert family.info.name == "k22" and family.info.sizes == ()
    assert family.info.size_allowed(32, 32) and not family.info.size_allowed(30, 32)


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim", "dpmpp"])
@pytest.mark.parametrize("name", ["kandinsky", "sd"])
def test_every_scheduler_and_dynamic_thresholding_generate(
    name: str, scheduler: str, request: pytest.FixtureRequest
) -> None:
    family: Family = request.getfixturevalue(name)
    plain = family.generate(rows_for(family, prompt="a red circle", scheduler=scheduler))[0]
    thresholded = family.generate(
        rows_for(family, prompt="a red circle", scheduler=scheduler, dynamic_thresholding=True)
    )[0]
    assert plain.size == thresholded.size == family.info.default_size
    assert mean_pixel_diff(plain, thresholded) > 0, "thresholding changes the sample"


def test_kandinsky_negative_prompt_changes_the_image(kandinsky: Family) -> None:
    plain = kandinsky.generate(rows_for(kandinsky, prompt="a red circle"))[0]
    negative = kandinsky.generate(rows_for(kandinsky, prompt="a red circle", negative_prompt="blue square"))[
        0
    ]
    assert mean_pixel_diff(plain, negative) > 0


def test_kandinsky_mix_of_one_text_at_weight_one_is_the_prompt(kandinsky: Family) -> None:
    """A text ingredient takes the same path through the prior as a prompt."""
    prompt = kandinsky.embed_rows(rows_for(kandinsky, prompt="a red circle"))[0]
    mixed = kandinsky.embed_rows(rows_for(kandinsky, mix=(MixIngredient(1.0, text="a red circle"),)))[0]
    assert prompt.allclose(mixed, atol=1e-5)


def test_kandinsky_image_space_mix_is_the_renormalised_signed_sum(kandinsky: Family) -> None:
    """In image space each text goes through the prior alone and the samples are summed."""

    def embed(text: str):
        return kandinsky.embed_rows(rows_for(kandinsky, prompt=text))[0][0]

    circle, red, blue = embed("a red circle on a white background"), embed("red"), embed("blue")
    mix = (MixIngredient(-1.0, text="red"), MixIngredient(1.0, text="blue"))
    raw = kandinsky.embed_rows(
        rows_for(
            kandinsky,
            prompt="a red circle on a white background",
            mix=mix,
            renormalize_mix=False,
            mix_space="image",
        )
    )[0][0]
    assert raw.allclose(circle - red + blue, atol=1e-5)
    renormed = kandinsky.embed_rows(
        rows_for(kandinsky, prompt="a red circle on a white background", mix=mix, mix_space="image")
    )[0][0]
    average = (circle.norm() + red.norm() + blue.norm()) / 3
    assert renormed.norm().item() == pytest.approx(average.item(), rel=1e-4)


def test_kandinsky_text_space_mix_is_one_prior_call_on_the_mixed_texts(
    kandinsky: Kandinsky22Family, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default a mix's texts are mixed before the prior (pooled embedding, token states and masks), and the
    prior is called once, for one text; image space calls it on each text."""
    prompts: list[list[str]] = []
    seen: list[dict[str, torch.Tensor]] = []
    sample = Kandinsky22Family._sample_prior

    def counting(self: Kandinsky22Family, texts: list[str], *args: object) -> object:
        prompts.append(list(texts))
        return sample(self, texts, *args)  # type: ignore[arg-type]

    def capture(_module: torch.nn.Module, _args: tuple, kwargs: dict) -> None:
        seen.append(
            {key: kwargs[key] for key in ("proj_embedding", "encoder_hidden_states", "attention_mask")}
        )

    monkeypatch.setattr(Kandinsky22Family, "_sample_prior", counting)
    hook = kandinsky.prior.prior.register_forward_pre_hook(capture, with_kwargs=True)
    base = "a red circle on a white background"
    mix = (MixIngredient(-1.0, text="red"), MixIngredient(1.0, text="blue"))
    try:
        rows = rows_for(kandinsky, prompt=base, mix=mix)
        assert rows[0].request.mix_space == "text"
        text_space = kandinsky.embed_rows(rows)[0][0]
        assert [len(batch) for batch in prompts] == [1]
        image_space = kandinsky.embed_rows(rows_for(kandinsky, prompt=base, mix=mix, mix_space="image"))[0][0]
        assert [len(batch) for batch in prompts] == [1, 3]
    finally:
        hook.remove()
    encoded = kandinsky.encode_texts([base, "red", "blue"])
    weights = [1.0, -1.0, 1.0]
    pooled = mix_embeddings([c.pooled for c in encoded], weights)
    hidden, mask = mix_token_states([c.hidden for c in encoded], [c.mask for c in encoded], weights)
    conditional = seen[0]  # the first prior step of the text-space call; its second half is the conditional
    assert conditional["proj_embedding"][1].allclose(pooled, atol=1e-5)
    assert conditional["encoder_hidden_states"][1].allclose(hidden, atol=1e-5)
    assert torch.equal(conditional["attention_mask"][1], mask)
    assert torch.equal(mask, encoded[0].mask | encoded[1].mask | encoded[2].mask)
    assert not text_space.allclose(image_space, atol=1e-3)


def test_kandinsky_text_space_mix_is_reproducible_and_needs_a_positive_text(kandinsky: Family) -> None:
    mix = (MixIngredient(-1.0, text="red"), MixIngredient(1.0, text="blue"), MixIngredient(0.5, image=BLUE))
    first, again = (
        kandinsky.generate(rows_for(kandinsky, prompt="a red circle", mix=mix))[0] for _ in range(2)
    )
    assert first is not None and again is not None and max_pixel_diff(first, again) == 0
    image_space = kandinsky.generate(rows_for(kandinsky, prompt="a red circle", mix=mix, mix_space="image"))[
        0
    ]
    assert image_space is not None and mean_pixel_diff(first, image_space) > 0
    with pytest.raises(RequestError) as caught:
        rows_for(kandinsky, mix=(MixIngredient(-1.0, text="red"), MixIngredient(1.0, image=BLUE)))
    assert caught.value.field == "mix_space"
    rows_for(
        kandinsky, mix=(MixIngredient(-1.0, text="red"), MixIngredient(1.0, image=BLUE)), mix_space="image"
    )
    with pytest.raises(RequestError) as caught:
        rows_for(kandinsky, prompt="a red circle", mix_space="sideways")
    assert caught.value.field == "mix_space"


def test_kandinsky_prior_candidates_keep_the_draw_nearest_the_text(
    kandinsky: Kandinsky22Family, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DALL-E 2's two-sample prior: of the seeded draws, each text keeps the one its text embedding is nearest."""
    prompts = ["a red circle on a white background", "a blue square", "a green star"]
    rows = [
        Row(resolve_request(GenerationRequest(prompt=p, seed=7 + i, steps=2), kandinsky.info))
        for i, p in enumerate(prompts)
    ]
    single = kandinsky.embed_rows(rows)[0]
    monkeypatch.setattr(kandinsky, "prior_candidates", 4)
    chosen = kandinsky.embed_rows(rows)[0]
    draws = torch.stack(
        [
            kandinsky.prior(
                prompts,
                num_inference_steps=2,
                generator=[
                    torch.Generator().manual_seed(7 + i + k * CANDIDATE_SEED_STRIDE) for i in range(3)
                ],
            ).image_embeds
            for k in range(4)
        ]
    )  # [K, B, D]
    assert draws[0].allclose(single, atol=1e-5), "the first draw is the one-candidate result"
    nearness = torch.nn.functional.cosine_similarity(
        draws, kandinsky.embed_texts(prompts).unsqueeze(0), dim=-1
    )
    assert len({tuple(d.flatten().tolist()) for d in draws[:, 0]}) == 4, "the draws differ"
    for b in range(3):
        assert chosen[b].allclose(draws[nearness[:, b].argmax(), b], atol=1e-5)
    assert (nearness.max(dim=0).values >= nearness[0]).all()
    negative_rows = [
        Row(
            resolve_request(
                GenerationRequest(prompt="a red circle", negative_prompt="blue", seed=1, steps=2),
                kandinsky.info,
            )
        )
    ]
    with_negative = kandinsky.embed_rows(negative_rows)
    monkeypatch.setattr(kandinsky, "prior_candidates", 1)
    assert with_negative[1].allclose(kandinsky.embed_rows(negative_rows)[1], atol=1e-5), (
        "the negative embedding does not depend on the candidates"
    )


def test_model_settings_counts_must_be_at_least_one(tmp_path: Path) -> None:
    root = tiny_models.build_kandinsky22(tmp_path / "k22", draftroom_json={"prior_candidates": 0})
    with pytest.raises(ModelLoadError, match="prior_candidates must be at least 1"):
        load_family(root, device="cpu")


def test_kandinsky_image_ingredient_and_interpolation(kandinsky: Family) -> None:
    image_only = kandinsky.embed_rows(rows_for(kandinsky, mix=(MixIngredient(1.0, image=BLUE),)))[0][0]
    assert image_only.allclose(kandinsky.embed_image(BLUE), atol=1e-5)
    text = kandinsky.embed_rows(rows_for(kandinsky, prompt="a red circle"))[0][0]
    ends = [
        kandinsky.embed_rows(
            rows_for(kandinsky, prompt="a red circle", mix=(MixIngredient(1.0, image=BLUE),), interpolation=t)
        )[0][0]
        for t in (0.0, 1.0)
    ]
    assert ends[0].allclose(text, atol=1e-4) and ends[1].allclose(image_only, atol=1e-4)
    image = kandinsky.generate(
        rows_for(kandinsky, prompt="a red circle", mix=(MixIngredient(1.0, image=BLUE),), interpolation=0.5)
    )[0]
    assert image.size == (32, 32)


def test_sd_mix_and_ip_adapter_image_prompt(sd_ip: Family) -> None:
    plain = sd_ip.generate(rows_for(sd_ip, prompt="a red circle"))[0]
    with_image = sd_ip.generate(
        rows_for(sd_ip, prompt="a red circle", mix=(MixIngredient(1.0, image=BLUE),))
    )[0]
    minus_red = sd_ip.generate(
        rows_for(sd_ip, prompt="a red circle", mix=(MixIngredient(-1.0, text="red"),))
    )[0]
    assert mean_pixel_diff(plain, with_image) > 0 and mean_pixel_diff(plain, minus_red) > 0
    with pytest.raises(RequestError) as caught:
        rows_for(
            sd_ip, mix=(MixIngredient(1.0, text="red"), MixIngredient(1.0, image=BLUE)), interpolation=0.5
        )
    assert caught.value.field == "interpolation"


def test_sd_mixes_texts_in_text_space_only(sd: Family) -> None:
    with pytest.raises(RequestError) as caught:
        rows_for(sd, prompt="a red circle", mix=(MixIngredient(-1.0, text="red"),), mix_space="image")
    assert caught.value.field == "mix_space"


def test_sd_without_ip_adapter_refuses_image_ingredients(sd: Family) -> None:
    with pytest.raises(RequestError) as caught:
        rows_for(sd, prompt="x", mix=(MixIngredient(1.0, image=BLUE),))
    assert caught.value.field == "mix[0].image"


def test_model_hash_is_sha256_over_the_safetensors_files(sd_path: Path, sd: Family) -> None:
    files = sorted(sd_path.rglob("*.safetensors"), key=lambda p: p.relative_to(sd_path).as_posix())
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    assert sd.info.hash == digest.hexdigest() == model_hash([sd_path])


def test_loading_refuses_unknown_layouts_and_pickled_weights(tmp_path: Path, sd_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        load_family(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="unknown layout"):
        load_family(tmp_path / "empty")
    pickled = shutil.copytree(sd_path, tmp_path / "pickled")
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(pickled / "unet")
    (pickled / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    unet.save_pretrained(pickled / "unet", safe_serialization=False)
    with pytest.raises(ModelLoadError):
        load_family(pickled, device="cpu")


def test_model_id_from_the_local_hugging_face_cache(
    tmp_path: Path, sd_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    repo = tmp_path / "hub" / "models--draftroom--tiny-sd"
    shutil.copytree(sd_path, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    family = load_family("draftroom/tiny-sd", device="cpu")
    assert family.info.name == "draftroom/tiny-sd" and family.info.family == "stable-diffusion"
    with pytest.raises(ModelLoadError, match="local Hugging Face cache"):
        load_family("draftroom/not-cached")


def test_cpu_is_picked_when_asked() -> None:
    assert pick_device("cpu").type == "cpu"
