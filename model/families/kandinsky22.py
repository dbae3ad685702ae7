"""Kandinsky 2.2 (and the embedded model, which uses its exact classes): a prior folder and a decoder folder.

Text reaches the decoder as a CLIP image embedding made by the prior. A mix's texts are mixed in CLIP text
space by default (``mix_space`` "text": their pooled embeddings and the prior's per-token text states, under
their attention masks, before one prior call), or each goes through the prior alone and the samples are
summed in image space ("image", as the prior pipeline's ``interpolate``); images are always mixed in image
space (the prior pipeline's own CLIP image encoder), with signed weights or slerp. With ``prior_candidates``
> 1 in the model's settings, each text draws that many prior samples and keeps the one nearest its own text
embedding (DALL-E 2, section 2.1, which draws two). With a ``verifier/`` folder, each picture of a prompt or a
text-space mix of texts may start from several noises and finish only the one the verifier judges best
(candidates.py): ``decoder_candidates`` in the settings is the default count, and a request may ask for 1 to
MAX_CANDIDATES; ``candidate_pruning`` says when the verifier cuts them down. The decoder runs in our own
denoising loop (denoising.py) over the decoder's UNet, scheduler and movq. With an ``upsampler/`` folder
(upsampler.py), rows that ask to ``upscale`` get their finished picture upsampled 4x, in one batch.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import PIL.Image
import torch
from diffusers import KandinskyV22Pipeline, KandinskyV22PriorPipeline
from diffusers.image_processor import VaeImageProcessor

from model.device_options import DeviceOptions
from model.engine.engine_common import (
    GenerationRequest,
    MixIngredient,
    ModelInfo,
    RequestError,
    Stage,
    resolved,
)
from model.families.base import BatchControl, Family, Row, WordVocabulary
from model.families.candidates import (
    CANDIDATE_SEED_STRIDE,
    LEGACY_PRUNING,
    CandidatePicker,
    collapse,
    expand_rows,
    parse_pruning,
)
from model.families.denoising import DenoisingLoop, StepHook, classifier_free_guidance, row_cfg_scale
from model.families.loading import ModelLoadError
from model.families.runtime import place
from model.families.schedulers import DynamicThreshold, SchedulerBank
from model.families.upsampler import SCALE, UpsamplerPipeline
from model.families.verifier import AttributeVerifier
from model.mixing import mix_embeddings, mix_token_states

FAMILY = "kandinsky22"
DEFAULTS = {
    "default_steps": 50,
    "default_guidance": 4.0,
    "prior_steps": 25,
    "prior_guidance": 4.0,
    "prior_candidates": 1,
    "decoder_candidates": 1,
}
MAX_CANDIDATES = 16


@dataclass(frozen=True)
class TextConditioning:
    """What the prior reads of a text: CLIP's pooled, projected embedding [D], the last hidden states [T, H]
    and their attention mask [T]. A text-space mix is one of these, made of its texts' own."""

    pooled: torch.Tensor
    hidden: torch.Tensor
    mask: torch.Tensor


@dataclass(frozen=True)
class _PriorRun:
    """One prior sample for one row: of ``text``, or of ``conditioning`` when that is given (a text-space mix;
    ``text`` then only holds its place in the pipeline's batch). ``ingredient`` None: the run only gives the
    negative; ``TEXT_PART``: the run is the row's text-space mix."""

    row: int
    ingredient: int | None
    text: str
    negative: str
    seed: int
    conditioning: TextConditioning | None = None


TEXT_PART = -1
"""The ingredient index of a row's text-space mix (its texts mixed before one prior call)."""


class Kandinsky22Family(Family):
    def __init__(
        self,
        prior: KandinskyV22PriorPipeline,
        decoder: KandinskyV22Pipeline,
        *,
        name: str,
        path: str,
        model_hash: str,
        settings: dict[str, Any],
        verifier: AttributeVerifier | None = None,
        upsampler: UpsamplerPipeline | None = None,
        device: torch.device | None = None,
    ) -> None:
        # where the models compute: under model CPU offload that is the GPU, while the pipelines' ``device``
        # says cpu, so the loader passes the device it placed them on
        self.device = torch.device(device) if device is not None else decoder.device
        self.prior = prior  # diffusers' prior pipeline, called as is
        self.decoder = decoder  # holds the decoder's unet, scheduler and movq; the denoising loop is ours
        self.verifier = verifier
        self.upsampler = upsampler
        self.vocabulary = (
            WordVocabulary(prior.tokenizer) if WordVocabulary.applies_to(prior.tokenizer) else None
        )
        """The embedded model's word-level vocabulary; None for the Hub's CLIP (BPE) tokenizer."""
        prior.set_progress_bar_config(disable=True)
        self._schedulers = SchedulerBank(decoder.scheduler)
        self._threshold = DynamicThreshold(float(settings.get("latent_range", 1.0)))
        self._prior_steps = int(settings.get("prior_steps", DEFAULTS["prior_steps"]))
        self._prior_guidance = float(settings.get("prior_guidance", DEFAULTS["prior_guidance"]))
        self.prior_candidates = int(settings.get("prior_candidates", DEFAULTS["prior_candidates"]))
        decoder_candidates = int(settings.get("decoder_candidates", DEFAULTS["decoder_candidates"]))
        if decoder_candidates > 1 and verifier is None:
            raise ModelLoadError(f"{path}: decoder_candidates needs a verifier/ folder to judge them")
        if decoder_candidates > MAX_CANDIDATES:
            raise ModelLoadError(f"{path}: decoder_candidates must be at most {MAX_CANDIDATES}")
        try:
            self._pruning = parse_pruning(settings.get("candidate_pruning", list(LEGACY_PRUNING)))
        except ValueError as error:
            raise ModelLoadError(f"{path}: {error}") from error
        scale = decoder.movq_scale_factor
        self._image_processor = VaeImageProcessor(vae_scale_factor=scale)
        native = (decoder.unet.config.sample_size or 64) * scale
        multiple = scale * scale  # the pipeline rounds sizes up to this
        self._zero_embed = prior.get_zero_embed(1, device=self.device)
        default_scheduler = settings.get("default_scheduler", self._schedulers.default_name)
        sizes = tuple((int(w), int(h)) for w, h in settings.get("sizes", []))
        self.info = ModelInfo(
            name=name,
            family=FAMILY,
            path=path,
            hash=model_hash,
            default_steps=int(settings.get("default_steps", DEFAULTS["default_steps"])),
            default_guidance=float(settings.get("default_guidance", DEFAULTS["default_guidance"])),
            default_scheduler=default_scheduler,
            schedulers=self._schedulers.names,
            default_size=sizes[0] if sizes else (native, native),
            sizes=sizes,
            size_multiple=multiple,
            min_size=max(multiple, native // 2 // multiple * multiple),
            max_size=int(settings.get("max_size", 2 * native)),
            max_images=int(settings.get("max_images", 8)),
            image_ingredients=True,
            device=str(self.device),
            dtype=str(decoder.unet.dtype).removeprefix("torch."),
            prior_steps=self._prior_steps,
            default_candidates=decoder_candidates,
            max_candidates=MAX_CANDIDATES if verifier is not None else 1,
            upscale_factor=SCALE if upsampler is not None else 1,
        )

    def unknown_words(self, text: str) -> list[str]:
        return [] if self.vocabulary is None else self.vocabulary.unknown_words(text)

    def batch_key(self, request: GenerationRequest) -> Hashable:
        return (request.width, request.height, request.steps, request.scheduler, request.dynamic_thresholding)

    @torch.no_grad()
    def generate(
        self, rows: Sequence[Row], control: BatchControl | None = None, step_hook: StepHook | None = None
    ) -> list[PIL.Image.Image | None]:
        first = rows[0].request
        if control is not None:
            control.on_stage(Stage.PRIOR, rows)
        embeds, negatives = self.embed_rows(rows)
        self.prior.maybe_free_model_hooks()  # under model CPU offload: the prior's models leave the GPU
        unet = self.decoder.unet
        device, dtype = self.device, unet.dtype
        decoder_rows, owner, picker = self._candidates(rows)
        embeds, negatives = embeds[owner].to(device, dtype), negatives[owner].to(device, dtype)
        scales = row_cfg_scale(decoder_rows, dtype, device)
        cfg = bool((scales > 1).any())
        scheduler = self._schedulers.get(resolved(first.scheduler), first.dynamic_thresholding)
        channels = unet.config.in_channels
        learned_variance = scheduler.config.get("variance_type") in ("learned", "learned_range")

        def predict(latents: torch.Tensor, timestep: torch.Tensor, positions: list[int]) -> torch.Tensor:
            """The decoder UNet on the live rows, conditioned on their image embeddings, with per-row CFG."""
            image_embeds = embeds[positions]
            if cfg:
                latents = torch.cat([latents, latents])
                image_embeds = torch.cat([negatives[positions], image_embeds])
            output = unet(
                latents,
                timestep,
                encoder_hidden_states=None,
                added_cond_kwargs={"image_embeds": image_embeds},
            ).sample
            if cfg:
                output = classifier_free_guidance(output, scales[positions], channels)
            return output if learned_variance else output[:, :channels]

        loop = DenoisingLoop(
            decoder_rows,
            scheduler,
            resolved(first.steps),
            (channels, *self._latent_size(first)),
            predict,
            device=device,
            dtype=dtype,
            control=control,
            guidance=self.guidance_rows(decoder_rows),
            threshold=self._threshold if first.dynamic_thresholding else None,
            picker=picker,
            step_hook=step_hook,
        )
        return self._upscaled(rows, collapse(loop.by_row(self.pictures(loop.run())), owner, len(rows)))

    def _upscaled(
        self, rows: Sequence[Row], images: list[PIL.Image.Image | None]
    ) -> list[PIL.Image.Image | None]:
        """The rows that ask to upscale get the upsampler's picture, in one batch; each row's noise comes from
        its own seed, so a picture does not depend on its batch."""
        picked = {i: image for i, image in enumerate(images) if image is not None and rows[i].request.upscale}
        if not picked:
            return images
        upscaled = self.upscale(list(picked.values()), [rows[i].seed for i in picked])
        result = list(images)
        for i, image in zip(picked, upscaled, strict=True):
            result[i] = image
        return result

    def upscale(self, images: list[PIL.Image.Image], seeds: list[int]) -> list[PIL.Image.Image]:
        """The upsampler's pictures of ``images``, one batch, each image's noise from its seed."""
        assert self.upsampler is not None, "validation refuses upscale on a model without an upsampler"
        generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        upscaled = self.upsampler(images, generator=generators)
        assert isinstance(upscaled, list)
        return upscaled

    def _candidates(self, rows: Sequence[Row]) -> tuple[list[Row], list[int], CandidatePicker | None]:
        """The decoder's rows (each row's requested candidates), their owners, and the picker that keeps one.

        Rows carry resolved requests: validation allows more than one candidate only on a model with a verifier,
        and gives guided requests and mixes other than a text-space mix of texts one (the verifier reads a text).
        """
        counts = [int(row.request.candidates or 1) for row in rows]
        decoder_rows, owner = expand_rows(rows, counts)
        if len(decoder_rows) == len(rows):
            return decoder_rows, owner, None
        assert self.verifier is not None
        judged = [index for index, count in enumerate(counts) if count > 1]
        texts = self.verifier_texts([rows[index].request for index in judged])
        picker = CandidatePicker(
            owner,
            dict(zip(judged, texts, strict=True)),
            self.verifier,
            self.decode_latents,
            resolved(rows[0].request.steps),
            self._pruning,
        )
        return decoder_rows, owner, picker

    def check_request(self, request: GenerationRequest) -> None:
        """A text-space mix draws one prior sample of its mixed texts, which needs a text to draw: at least one
        with a positive weight (subtracting texts alone leaves a direction, not a picture's text). Slerp between
        two texts takes the weights as they are."""
        texts = [item for item in _ingredients(request) if item.text is not None]
        if not request.mix or request.mix_space != "text" or not texts or _slerps_texts(request, texts):
            return
        if not any(item.weight > 0 for item in texts):
            raise RequestError(
                "mix_space",
                "text needs a text ingredient with a positive weight (a written prompt counts, at 1); "
                "choose image to subtract texts from images",
            )

    def text_part(self, request: GenerationRequest) -> tuple[TextConditioning, float] | None:
        """A text-space mix's texts mixed into one conditioning for one prior call (their signed sum, or slerp
        between two, as ``mix_embeddings`` makes it), and the weight the prior's sample of it takes among the
        mix's images: the texts' positive weights added up (subtracting "red" removes an attribute, not an
        amount of text). None where texts go through the prior one by one (image space, or no mix)."""
        texts = [item for item in _ingredients(request) if item.text is not None]
        if not request.mix or request.mix_space != "text" or not texts:
            return None
        encoded = self.encode_texts([resolved(item.text) for item in texts])
        weights = [item.weight for item in texts]
        interpolation = request.interpolation if _slerps_texts(request, texts) else None
        pooled = mix_embeddings(
            [c.pooled for c in encoded],
            weights,
            interpolation=interpolation,
            renormalize_result=request.renormalize_mix,
        )
        hidden, mask = mix_token_states(
            [c.hidden for c in encoded],
            [c.mask for c in encoded],
            weights,
            interpolation=interpolation,
            renormalize_result=request.renormalize_mix,
        )
        return TextConditioning(pooled, hidden, mask), sum(w for w in weights if w > 0)

    @torch.no_grad()
    def embed_rows(self, rows: Sequence[Row]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's CLIP image embedding (its prompt, or its mix) and negative embedding, [B, D] each.

        Texts go through the prior in at most two batched calls, with one generator per text seeded by the
        row's seed: rows with a negative prompt (the prior's own negative handling: the negative is both the
        prior's unconditional text and, through the prior, the decoder's negative embedding) and rows
        without one (the decoder's negative is the embedding of an empty image, as in the prior pipeline).
        A text-space mix is one prior sample of its mixed texts; image space samples each text alone. Either
        way the mix's images join the prior's samples in image space.
        """
        runs: list[_PriorRun] = []
        text_part_weights: dict[int, float] = {}
        for index, row in enumerate(rows):
            ingredients = _ingredients(row.request)
            negative = row.request.negative_prompt
            part = self.text_part(row.request)
            if part is not None:
                conditioning, text_part_weights[index] = part
                placeholder = next(resolved(item.text) for item in ingredients if item.text is not None)
                runs.append(_PriorRun(index, TEXT_PART, placeholder, negative, row.seed, conditioning))
                continue
            texts = [(k, item.text) for k, item in enumerate(ingredients) if item.text is not None]
            runs += [_PriorRun(index, k, text, negative, row.seed) for k, text in texts]
            if negative and not texts:
                runs.append(_PriorRun(index, None, negative, negative, row.seed))
        text_embeds: dict[tuple[int, int], torch.Tensor] = {}
        negative_embeds: dict[int, torch.Tensor] = {}
        for with_negative in (False, True):
            group = [run for run in runs if bool(run.negative) == with_negative]
            if not group:
                continue
            embeds, negatives = self._prior_samples(group, with_negative)
            for run, embed, negative in zip(group, embeds, negatives, strict=True):
                if run.ingredient is not None:
                    text_embeds[(run.row, run.ingredient)] = embed
                if with_negative:
                    negative_embeds[run.row] = negative
        image_embeds: dict[int, torch.Tensor] = {}

        def embed_once(image: PIL.Image.Image | None) -> torch.Tensor:
            if id(image) not in image_embeds:
                image_embeds[id(image)] = self.embed_image(resolved(image))
            return image_embeds[id(image)]

        positives: list[torch.Tensor] = []
        for index, row in enumerate(rows):
            ingredients = _ingredients(row.request)
            if index in text_part_weights:
                images = [item for item in ingredients if item.text is None]
                embeddings = [text_embeds[(index, TEXT_PART)], *(embed_once(item.image) for item in images)]
                weights = [text_part_weights[index], *(item.weight for item in images)]
            else:
                embeddings = [
                    text_embeds[(index, k)] if item.text is not None else embed_once(item.image)
                    for k, item in enumerate(ingredients)
                ]
                weights = [item.weight for item in ingredients]
            if len(embeddings) == 1 and index in text_part_weights:
                positives.append(embeddings[0])  # the mix is all texts: the prior's sample of them is it
            elif row.request.mix:
                positives.append(
                    mix_embeddings(
                        embeddings,
                        weights,
                        interpolation=row.request.interpolation,
                        renormalize_result=row.request.renormalize_mix,
                    )
                )
            else:
                positives.append(embeddings[0])
        negative_rows = [negative_embeds.get(index, self._zero_embed[0]) for index in range(len(rows))]
        return torch.stack(positives), torch.stack(negative_rows)

    def _prior_samples(
        self, group: list[_PriorRun], with_negative: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One batched prior call for ``group``: each run's image embedding and negative embedding, [B, D] each.

        The batch holds ``prior_candidates`` copies of the group, candidate-major; each run keeps the candidate
        whose embedding is nearest (cosine) its text's CLIP embedding (a mix's: the mixed one). Candidate 0 is
        seeded with the run's seed, so one candidate gives exactly the plain prior pipeline's result, and the
        negative always comes from it.
        """
        count = self.prior_candidates
        seeds = [run.seed + k * CANDIDATE_SEED_STRIDE for k in range(count) for run in group]
        texts = [run.text for run in group] * count
        negatives = [run.negative for run in group] * count if with_negative else None
        # the prior appends the negatives as extra rows, which need their own generators
        generators = [torch.Generator().manual_seed(seed) for seed in seeds * (2 if with_negative else 1)]
        conditioned = {
            position: run.conditioning
            for position, run in enumerate(group * count)
            if run.conditioning is not None
        }
        image_embeds, negative_image_embeds = self._sample_prior(texts, negatives, generators, conditioned)
        candidates = image_embeds.unflatten(0, (count, len(group)))  # [K, B, D]
        if count > 1:
            text = self.embed_texts([run.text for run in group]).to(candidates)
            for position, run in enumerate(group):
                if run.conditioning is not None:
                    text[position] = run.conditioning.pooled.to(text)
            best = torch.nn.functional.cosine_similarity(candidates, text.unsqueeze(0), dim=-1).argmax(dim=0)
            chosen = candidates[best, torch.arange(len(group))]
        else:
            chosen = candidates[0]
        return chosen, negative_image_embeds[: len(group)]

    @torch.no_grad()
    def _sample_prior(
        self,
        texts: list[str],
        negatives: list[str] | None,
        generators: list[torch.Generator],
        conditioned: dict[int, TextConditioning],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The prior's image embeddings for ``texts`` and for the negatives (zero embeddings without them).

        The prior pipeline's own sampling, step for step (same encodings, latents, scheduler and guidance, so
        a plain prompt draws exactly what ``KandinskyV22PriorPipeline.__call__`` draws), owned here because
        ``conditioned`` replaces the encodings at its positions: text-space mixes reach the prior as
        conditionings, which the pipeline's call (texts only) cannot take. Negatives ride as extra rows."""
        prior, scheduler = self.prior.prior, self.prior.scheduler
        prompts = texts + negatives if negatives is not None else texts
        unconditional = 2 * negatives if negatives is not None else [""] * len(prompts)
        encoded = self.encode_texts(prompts)
        for position, conditioning in conditioned.items():
            encoded[position] = conditioning
        guided = self._prior_guidance > 1
        if guided:
            encoded = self.encode_texts(unconditional) + encoded  # the unconditional half first
        dtype = self.prior.text_encoder.dtype
        pooled = torch.stack([c.pooled.to(self.device, dtype) for c in encoded])
        hidden = torch.stack([c.hidden.to(self.device, dtype) for c in encoded])
        mask = torch.stack([c.mask.to(self.device) for c in encoded])
        scheduler.set_timesteps(self._prior_steps, device=self.device)
        timesteps = scheduler.timesteps
        latents = self.prior.prepare_latents(
            (len(prompts), prior.config.embedding_dim), pooled.dtype, self.device, generators, None, scheduler
        )
        for i, t in enumerate(timesteps):
            predicted = prior(
                torch.cat([latents] * 2) if guided else latents,
                timestep=t,
                proj_embedding=pooled,
                encoder_hidden_states=hidden,
                attention_mask=mask,
            ).predicted_image_embedding
            if guided:
                unconditioned, conditioned_prediction = predicted.chunk(2)
                predicted = unconditioned + self._prior_guidance * (conditioned_prediction - unconditioned)
            latents = scheduler.step(
                predicted,
                timestep=t,
                sample=latents,
                generator=generators,
                prev_timestep=timesteps[i + 1] if i + 1 < len(timesteps) else None,
            ).prev_sample
        latents = prior.post_process_latents(latents)
        if negatives is None:
            return latents, self.prior.get_zero_embed(latents.shape[0], device=latents.device)
        embeds, negative_embeds = latents.chunk(2)
        return embeds, negative_embeds

    def verifier_texts(self, requests: Sequence[GenerationRequest]) -> torch.Tensor:
        """The text embedding [B, D] the verifier judges each request's candidates by: its prompt's, or its
        text-space mix's mixed one (validation gives other mixes one candidate)."""
        texts = self.embed_texts([request.prompt for request in requests])
        for position, request in enumerate(requests):
            part = self.text_part(request)
            if part is not None:
                texts[position] = part[0].pooled.to(texts)
        return texts

    def encode_texts(self, texts: list[str]) -> list[TextConditioning]:
        """What the prior reads of each text, encoded as the prior pipeline encodes a prompt."""
        tokenizer, encoder = self.prior.tokenizer, self.prior.text_encoder
        tokens = tokenizer(
            texts,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        device = self.device
        output = encoder(tokens.input_ids.to(device))
        masks = tokens.attention_mask.bool().to(device)
        return [
            TextConditioning(pooled, hidden, mask)
            for pooled, hidden, mask in zip(output.text_embeds, output.last_hidden_state, masks, strict=True)
        ]

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """The texts' CLIP text embeddings [B, D] (the projected embeddings the prior is conditioned on)."""
        return torch.stack([c.pooled for c in self.encode_texts(texts)])

    def embed_images(self, images: Sequence[PIL.Image.Image]) -> torch.Tensor:
        """The images' CLIP image embeddings [B, D], through the prior pipeline's own processor and encoder."""
        pixels = self.prior.image_processor(
            [i.convert("RGB") for i in images], return_tensors="pt"
        ).pixel_values
        encoder = self.prior.image_encoder
        return encoder(pixels.to(self.device, encoder.dtype)).image_embeds

    def embed_image(self, image: PIL.Image.Image) -> torch.Tensor:
        """An image's CLIP image embedding [D]."""
        return self.embed_images([image])[0]

    def encode_reference(self, image: PIL.Image.Image, width: int, height: int) -> torch.Tensor:
        """The guidance image in the decoder's latent space [C, h, w] (movq encoder, before quantisation)."""
        movq = self.decoder.movq
        pixels = self._image_processor.preprocess(image.convert("RGB"), height=height, width=width)
        return movq.encode(pixels.to(self.device, movq.dtype)).latents[0]

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] from decoder latents [B, C, h, w] (what the pipeline does after its last step)."""
        image = self.decoder.movq.decode(latents, force_not_quantize=True).sample
        return (image * 0.5 + 0.5).clamp(0, 1)

    def pictures(self, latents: torch.Tensor) -> list[PIL.Image.Image]:
        """Pictures from decoder latents [B, C, h, w], decoded by the movq."""
        return VaeImageProcessor.numpy_to_pil(VaeImageProcessor.pt_to_numpy(self.decode_latents(latents)))

    def preview_images(self, latents: torch.Tensor) -> list[PIL.Image.Image]:
        """Previews are decoded as the finished pictures are: the movq costs little next to a decoder step."""
        return self.pictures(latents)

    def _latent_size(self, request: GenerationRequest) -> tuple[int, int]:
        scale = self.decoder.movq_scale_factor
        return (
            -(-resolved(request.height) // scale**2) * scale,
            -(-resolved(request.width) // scale**2) * scale,
        )


def _ingredients(request: GenerationRequest) -> tuple[MixIngredient, ...]:
    return request.ingredients() or (MixIngredient(weight=1.0, text=request.prompt),)


def _slerps_texts(request: GenerationRequest, texts: Sequence[MixIngredient]) -> bool:
    """Whether the request slerps between two texts (in text space, their encodings are slerped)."""
    return request.interpolation is not None and len(texts) == 2


def load_kandinsky22(
    prior_dir: Path,
    decoder_dir: Path,
    *,
    name: str,
    path: str,
    model_hash: str,
    settings: dict[str, Any],
    device: torch.device,
    dtype: torch.dtype,
    options: DeviceOptions,
    verifier_dir: Path | None = None,
    upsampler_dir: Path | None = None,
) -> Kandinsky22Family:
    common = {"dtype": dtype, "use_safetensors": True, "local_files_only": True}
    prior = KandinskyV22PriorPipeline.from_pretrained(prior_dir, **common)
    place(prior, device, options, denoisers=())  # the prior's transformer runs few, cheap steps
    decoder = KandinskyV22Pipeline.from_pretrained(decoder_dir, **common)
    place(decoder, device, options)
    verifier = (
        AttributeVerifier.from_pretrained(verifier_dir, dtype=dtype).to(device) if verifier_dir else None
    )
    upsampler = (
        UpsamplerPipeline.from_pretrained(upsampler_dir, **common).to(device) if upsampler_dir else None
    )
    return Kandinsky22Family(
        prior,
        decoder,
        name=name,
        path=path,
        model_hash=model_hash,
        settings=settings,
        verifier=verifier,
        upsampler=upsampler,
        device=device,
    )
