"""The Generate tab: prompt, advanced settings, guidance image, the mixing panel, progress and results.

The handlers parse the form into a `JobRequest`, call the generation job service
(webapp/services/generation_jobs.py) and render. Images the user adds (guidance, mix ingredients) are
checked like REST uploads and stored as the user's own uploads, so the request carries their ids; the
generate handler streams the progress panel (webapp/ui/progress.py) until storage holds the final status.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import gradio as gr
from PIL import Image

from model.engine.engine_common import EngineClosed, QueueFull, RequestError
from model.engine.request_fields import (
    FIELDS,
    GUIDANCE_SEMANTICS,
    MAX_INGREDIENTS,
    MAX_SEED,
    model_bounds,
    recorded_mix_space,
)
from model.guidance import scale_of_per_step_pull
from storage.errors import StorageError
from storage.metadata import PARAMETERS_KEY
from storage.types import GenerationInfo, GenerationStatus, MixIngredientRef, UserInfo
from webapp.context import Studio
from webapp.errors import ApiError
from webapp.services.generation_jobs import JobRequest
from webapp.ui.common import (
    ImageFiles,
    escape_md,
    guard,
    plain_markdown,
    ui_error,
    uploaded_file,
    user_error,
)
from webapp.ui.progress import finished_html, progress_html
from webapp.uploads import check_image

MIX_SLOTS = MAX_INGREDIENTS  # the form holds any mix the engine accepts, so every recipe can be reused
RANDOM_SEED = -1
POLL_S = 0.25
GENERATE_CONCURRENCY = 16
"""Generate events streaming at once; the engine's own queue (QueueFull) bounds the work behind them."""


def size_choices(info: Any) -> list[str]:
    """The sizes the model makes: its exact list, else a few squares within its range."""
    if info.sizes:
        sizes = list(info.sizes)
    else:
        sides = {info.default_size[0], 256, 512, 768, 1024}
        sizes = [info.default_size] + [
            (s, s) for s in sorted(sides) if info.size_allowed(s, s) and (s, s) != info.default_size
        ]
    return [f"{w}x{h}" for w, h in sizes]


CANDIDATES_FORCED = "1 while a mix or a guidance image is set: those pictures start from one noise"


def gallery_items(results: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The results gallery: each image captioned with its id, its own seed and, once submitted, its review status."""
    return [
        (
            result["path"],
            f"#{result['id']} · seed {result['seed']}"
            + ("" if result["status"] == "draft" else f" · {result['status']}"),
        )
        for result in results
    ]


FIELD_LABELS = {
    "prompt": "Prompt",
    "negative_prompt": "Negative prompt",
    "guidance_image": "Guidance image",
    "mix_space": "Mix texts in",
}


def field_label(field: str) -> str:
    """A request field as the form names it: `mix[1].text` is "Ingredient 2", `mix[1].weight` its weight."""
    ingredient = re.fullmatch(r"mix\[(\d+)\](?:\.(\w+))?", field)
    if ingredient:
        part = ingredient[2]
        return f"Ingredient {int(ingredient[1]) + 1}" + ("" if part in (None, "text") else f" {part}")
    return FIELD_LABELS.get(field, field)


def recorded_guidance_scale(scale: float, decay: str, params: dict[str, Any]) -> float:
    """A stored generation's guidance scale as it reads today: recipes made before the scale meant the total
    pull (no `image_guidance_semantics`) recorded the per-step pull at their step count."""
    if params.get("image_guidance_semantics") == GUIDANCE_SEMANTICS or not params.get("steps"):
        return scale
    return round(scale_of_per_step_pull(scale, decay, int(params["steps"])), 3)


def png_parameters(path: str) -> str:
    """The A1111 `parameters` text inside a stored PNG: the recipe exactly as other tools read it."""
    with Image.open(path) as image:
        return str(image.info.get(PARAMETERS_KEY, ""))


@dataclass
class MixSlot:
    group: gr.Group
    kind: gr.Radio
    text: gr.Textbox
    image: gr.Image
    weight: gr.Slider
    remove: gr.Button


class GenerateTab:
    """Builds the tab's components (inside an open gr.Tab) and wires their events."""

    def __init__(self, studio: Studio, files: ImageFiles) -> None:
        self.studio = studio
        self.files = files
        info = studio.engine.model_info
        self.info = info
        self.sizes = size_choices(info)
        bounds = model_bounds(info)
        with gr.Row():
            with gr.Column(scale=3):
                self.prompt = gr.Textbox(
                    label="Prompt", lines=2, elem_id="prompt", placeholder="a red circle on a blue background"
                )
                self.unknown_note = plain_markdown("", elem_id="prompt-unknown-words")
                self.negative = gr.Textbox(label="Negative prompt", elem_id="negative-prompt")
                with gr.Accordion("Advanced settings", open=False, elem_id="advanced"):
                    with gr.Row():
                        self.seed = gr.Number(
                            label="Seed (-1: random)",
                            value=RANDOM_SEED,
                            precision=0,
                            minimum=RANDOM_SEED,
                            maximum=MAX_SEED,
                            elem_id="seed",
                        )
                        self.reroll = gr.Button("Re-roll seed", size="sm", elem_id="reroll")
                    with gr.Row():
                        self.steps = gr.Slider(
                            *bounds["steps"], value=info.default_steps, step=1, label="Steps", elem_id="steps"
                        )
                        self.cfg = gr.Slider(
                            *FIELDS["guidance_scale"].slider_span,
                            value=info.default_guidance,
                            step=0.5,
                            label="CFG scale",
                            elem_id="cfg",
                        )
                    with gr.Row():
                        self.size = gr.Dropdown(self.sizes, value=self.sizes[0], label="Size", elem_id="size")
                        self.count = gr.Slider(
                            *bounds["num_images"],
                            value=FIELDS["num_images"].number_default,
                            step=1,
                            label="Images",
                            elem_id="count",
                        )
                        self.scheduler = gr.Dropdown(
                            list(info.schedulers),
                            value=info.default_scheduler,
                            label="Scheduler",
                            elem_id="scheduler",
                        )
                    self.candidates = gr.Slider(
                        bounds["candidates"][0],
                        max(2, bounds["candidates"][1]),
                        value=info.default_candidates,
                        step=1,
                        label="Candidates per image",
                        elem_id="candidates",
                        visible=info.max_candidates > 1,
                        info=FIELDS["candidates"].help,
                    )
                    self.upscale = gr.Checkbox(
                        value=bool(FIELDS["upscale"].default),
                        label="Upscale 4x",
                        elem_id="upscale",
                        interactive=info.upscale_factor > 1,
                        info=FIELDS["upscale"].help
                        if info.upscale_factor > 1
                        else f"This model has no upsampler: its pictures stay at their size ({self.sizes[0]}).",
                    )
                with gr.Accordion("Guidance image", open=False, elem_id="guidance"):
                    self.guidance_image = gr.Image(
                        label="Guidance image (PNG, JPEG or WebP)",
                        type="filepath",
                        sources=["upload", "clipboard"],
                        image_mode="RGB",
                        elem_id="guidance-image",
                        height=160,
                    )
                    with gr.Row():
                        scale = FIELDS["image_guidance_scale"]
                        self.guidance_scale = gr.Slider(
                            *scale.slider_span,
                            value=scale.ui_start,
                            step=0.025,
                            label="Guidance scale",
                            info=scale.help,
                            elem_id="guidance-scale",
                        )
                        decay = FIELDS["image_guidance_decay"]
                        self.guidance_decay = gr.Radio(
                            list(decay.choices),
                            value=str(decay.default),
                            label="Decay over the steps",
                            elem_id="guidance-decay",
                        )
                with gr.Accordion("Mixing", open=False, elem_id="mixing"):
                    plain_markdown(
                        "Add texts or images to the prompt's embedding; negative weights subtract. "
                        "To change one thing, subtract the prompt's own phrase and add it edited "
                        '(-1 "a red circle", +1 "a blue circle"). With interpolation on, the two '
                        "ingredients (a written prompt counts as the first) are blended instead."
                    )
                    self.mix_count = gr.State(0)
                    self.slots = [self._slot(n) for n in range(MIX_SLOTS)]
                    with gr.Row():
                        self.add_slot = gr.Button("Add ingredient", size="sm", elem_id="mix-add")
                    with gr.Row():
                        self.interp_on = gr.Checkbox(
                            label="Interpolate between two ingredients", elem_id="interp-on"
                        )
                        interpolation = FIELDS["interpolation"]
                        self.interp = gr.Slider(
                            *interpolation.slider_span,
                            value=0.5,
                            step=0.05,
                            label="Interpolation",
                            interactive=False,
                            elem_id="interp",
                        )
                    mix_space = FIELDS["mix_space"]
                    self.mix_space = gr.Radio(
                        list(mix_space.choices),
                        value=str(mix_space.default),
                        label=FIELD_LABELS["mix_space"],
                        info=mix_space.help,
                        elem_id="mix-space",
                    )
                with gr.Row():
                    self.generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                    self.cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel-btn")
            with gr.Column(scale=2, elem_id="results"):
                self.progress = gr.HTML("", elem_id="progress", min_height=0)
                self.gallery = gr.Gallery(
                    label="Results", columns=2, height=320, format="png", elem_id="gallery", interactive=False
                )
                self.recipe = gr.Textbox(
                    label="Recipe (PNG parameters)", lines=4, interactive=False, elem_id="recipe"
                )
                with gr.Row():
                    self.submit_btn = gr.Button(
                        "Submit for review", interactive=False, elem_id="submit-review-btn"
                    )
                    self.reuse_btn = gr.Button("Reuse recipe", interactive=False, elem_id="reuse-btn")
                    self.download_btn = gr.DownloadButton(
                        "Download PNG", interactive=False, elem_id="download-btn"
                    )
                self.message = plain_markdown("", elem_id="generate-message")
                self.revising_note = plain_markdown("", elem_id="revising-note")
        self.generation = gr.State(None)
        self.revising = gr.State(None)
        """The image (from the Inbox) that the next submitted image revises."""
        self.results = gr.State([])
        self.selected = gr.State(None)
        self.loaded = gr.State(None)
        self._wire()

    def _slot(self, n: int) -> MixSlot:
        with gr.Group(visible=False, elem_id=f"mix-slot-{n}") as group:
            with gr.Row():
                kind = gr.Radio(
                    ["text", "image"], value="text", label=f"Ingredient {n + 1}", elem_id=f"mix-kind-{n}"
                )
                declared = FIELDS["mix.weight"]
                weight = gr.Slider(
                    *declared.slider_span,
                    value=declared.number_default,
                    step=0.05,
                    label="Weight",
                    elem_id=f"mix-weight-{n}",
                )
            text = gr.Textbox(label="Text", elem_id=f"mix-text-{n}")
            image = gr.Image(
                label="Image",
                type="filepath",
                sources=["upload", "clipboard"],
                image_mode="RGB",
                height=120,
                visible=False,
                elem_id=f"mix-image-{n}",
            )
            remove = gr.Button("Remove", size="sm", elem_id=f"mix-remove-{n}")
        return MixSlot(group, kind, text, image, weight, remove)

    # The form as a whole -----------------------------------------------------------------------

    @property
    def settings(self) -> list[gr.components.Component]:
        """The inputs of a generation outside the mix slots, in the order Reuse and Generate take them."""
        return [
            self.prompt,
            self.negative,
            self.seed,
            self.steps,
            self.cfg,
            self.size,
            self.count,
            self.scheduler,
            self.candidates,
            self.upscale,
            self.guidance_image,
            self.guidance_scale,
            self.guidance_decay,
            self.mix_count,
            self.interp_on,
            self.interp,
            self.mix_space,
            self.loaded,
        ]

    @property
    def form(self) -> list[gr.components.Component]:
        """Every input of a generation, in the order Reuse fills them."""
        parts: list[Any] = self.settings
        for slot in self.slots:
            parts += [slot.group, slot.kind, slot.text, slot.image, slot.weight]
        return parts

    def recipe_values(self, user: UserInfo, generation_id: int, *, remix: bool) -> dict[Any, Any]:
        """The form filled with a stored generation's recipe; `remix` marks the next prompt as its child."""
        storage = self.studio.storage
        generation = storage.generations.get(user.id, generation_id)
        prompt = storage.prompts.get(user.id, generation.prompt_id)
        params = generation.params
        size = f"{params.get('width')}x{params.get('height')}"
        values: dict[Any, Any] = {
            self.prompt: prompt.text,
            self.negative: prompt.negative_prompt,
            self.seed: generation.seed if generation.seed is not None else RANDOM_SEED,
            self.steps: min(int(params.get("steps") or self.info.default_steps), self.info.max_steps),
            self.cfg: params.get("guidance_scale", self.info.default_guidance),
            self.size: size if size in self.sizes else self.sizes[0],
            self.count: min(int(params.get("num_images") or 1), self.info.max_images),
            self.scheduler: params.get("scheduler")
            if params.get("scheduler") in self.info.schedulers
            else self.info.default_scheduler,
            self.candidates: min(
                int(params.get("candidates") or self.info.default_candidates), self.info.max_candidates
            ),
            self.upscale: bool(params.get("upscale")) and self.info.upscale_factor > 1,
            self.guidance_image: None,
            self.guidance_scale: 0.0,
            self.guidance_decay: "none",
            self.interp_on: params.get("interpolation") is not None,
            self.interp: params.get("interpolation") if params.get("interpolation") is not None else 0.5,
            self.mix_space: recorded_mix_space(params),
        }
        if prompt.guidance is not None:
            upload = storage.uploads.get(user.id, prompt.guidance.upload_id)
            values[self.guidance_image] = self.files.upload(upload.sha256)
            values[self.guidance_scale] = recorded_guidance_scale(
                prompt.guidance.scale, prompt.guidance.decay.value, params
            )
            values[self.guidance_decay] = prompt.guidance.decay.value
        mix = list(prompt.mix)
        values[self.mix_count] = len(mix)
        for n, slot in enumerate(self.slots):
            item = mix[n] if n < len(mix) else None
            image_path = None
            if item is not None and item.upload_id is not None:
                image_path = self.files.upload(storage.uploads.get(user.id, item.upload_id).sha256)
            values[slot.group] = gr.Group(visible=item is not None)
            values[slot.kind] = "image" if image_path else "text"
            values[slot.text] = item.text if item is not None and item.text else ""
            values[slot.image] = image_path
            values[slot.weight] = item.weight if item is not None else 1.0
        values[self.loaded] = {
            "prompt_id": prompt.id,
            "remix": remix,
            "text": prompt.text,
            "negative": prompt.negative_prompt,
            "mix": [[m.weight, m.text] for m in prompt.mix],
            "has_images": prompt.guidance is not None or any(m.upload_id is not None for m in prompt.mix),
        }
        return values

    # Events ------------------------------------------------------------------------------------

    def _wire(self) -> None:
        self.reroll.click(self._reroll, outputs=[self.seed], api_name="reroll_seed")
        self.add_slot.click(
            self._add_slot,
            inputs=[self.mix_count],
            outputs=[self.mix_count, *(s.group for s in self.slots)],
            api_name="mix_add",
        )
        self.interp_on.change(
            self._interp_switch, inputs=[self.interp_on], outputs=[self.interp], api_visibility="private"
        )
        texts = [self.prompt, self.negative, *(s.text for s in self.slots)]
        for text in texts:
            text.change(
                self._unknown_note,
                inputs=[
                    self.prompt,
                    self.negative,
                    self.mix_count,
                    *(c for s in self.slots for c in (s.kind, s.text)),
                ],
                outputs=[self.unknown_note],
                trigger_mode="always_last",
                show_progress="hidden",
                api_visibility="private",
            )
        for forcing in (self.guidance_image, self.guidance_scale, self.mix_count):
            forcing.change(
                self._candidates_forced,
                inputs=[self.guidance_image, self.guidance_scale, self.mix_count],
                outputs=[self.candidates],
                show_progress="hidden",
                api_visibility="private",
            )
        for n, slot in enumerate(self.slots):
            slot.kind.change(
                self._kind_switch,
                inputs=[slot.kind],
                outputs=[slot.text, slot.image],
                api_visibility="private",
            )
            slot.remove.click(
                self._remove_slot(n),
                inputs=self._slot_inputs(),
                outputs=[self.mix_count, *self._slot_outputs()],
                api_name=f"mix_remove_{n}",
            )
        self.generate_inputs = [
            *self.settings,
            *(c for s in self.slots for c in (s.kind, s.text, s.image, s.weight)),
        ]
        self.generate_btn.click(
            self._generate,
            inputs=self.generate_inputs,
            outputs=[
                self.progress,
                self.gallery,
                self.generation,
                self.results,
                self.selected,
                self.recipe,
                self.download_btn,
                self.message,
                self.loaded,
            ],
            api_name="generate",
            concurrency_limit=GENERATE_CONCURRENCY,
            show_progress="hidden",  # the #progress panel is the progress
        ).then(
            self._mark_selected,
            inputs=[self.selected, self.results],
            outputs=[self.gallery, self.submit_btn, self.reuse_btn],
            api_visibility="private",
        )
        self.cancel_btn.click(
            self._cancel, inputs=[self.generation], outputs=[self.message], api_name="cancel"
        )
        self.gallery.select(
            self._select,
            inputs=[self.results],
            outputs=[self.selected, self.recipe, self.download_btn, self.submit_btn, self.reuse_btn],
            api_name="select_result",
        )
        self.submit_btn.click(
            self._submit,
            inputs=[self.selected, self.results, self.revising],
            outputs=[self.message, self.results, self.revising, self.revising_note, self.gallery],
            api_name="submit_for_review",
        )
        self.reuse_btn.click(
            self._reuse, inputs=[self.selected, self.results], outputs=self.form, api_name="reuse_result"
        )

    def _kind_switch(self, kind: str, request: gr.Request) -> list[Any]:
        """An ingredient is a text or an image: only its own control shows."""
        guard(self.studio, request)
        return [gr.Textbox(visible=kind != "image"), gr.Image(visible=kind == "image")]

    def _unknown_note(
        self, request: gr.Request, prompt: str, negative_prompt: str, mix_count: int, *slots: Any
    ) -> str:
        """Name the words the model does not know, per field, as the user types (`slots`: kind, text of each
        mix slot; only the shown text ingredients count). `request` first: the slot values are variadic."""
        guard(self.studio, request)
        texts = [("prompt", prompt), ("negative_prompt", negative_prompt)] + [
            (f"mix[{n}].text", slots[2 * n + 1])
            for n in range(min(int(mix_count or 0), MIX_SLOTS))
            if slots[2 * n] != "image"
        ]
        return "\n\n".join(
            ("Not known" if field == "prompt" else f"{field_label(field)}: not known")
            + f" to this model: {escape_md(', '.join(words))}"
            for field, words in self.studio.jobs.unknown_words(texts)
        )

    def _candidates_forced(
        self, guidance_image: str | None, guidance_scale: float, mix_count: int, request: gr.Request
    ) -> gr.Slider:
        """A mixed or guided picture starts from one noise (the verifier reads only a text): the slider shows
        1 and is locked while a mix or a guidance image with a scale is set."""
        guard(self.studio, request)
        if int(mix_count or 0) > 0 or (guidance_image and float(guidance_scale or 0) > 0):
            return gr.Slider(value=1, interactive=False, info=CANDIDATES_FORCED)
        return gr.Slider(interactive=True, info=FIELDS["candidates"].help)

    def _interp_switch(self, on: bool, request: gr.Request) -> gr.Slider:
        """The interpolation slider is usable only while interpolation is on."""
        guard(self.studio, request)
        return gr.Slider(interactive=bool(on))

    def _reroll(self, request: gr.Request) -> int:
        guard(self.studio, request)
        return secrets.randbelow(MAX_SEED + 1)

    def _add_slot(self, count: int, request: gr.Request) -> list[Any]:
        guard(self.studio, request)
        count = min(int(count or 0) + 1, MIX_SLOTS)
        if count == MIX_SLOTS:
            gr.Info(f"The form holds {MIX_SLOTS} ingredients.")
        return [count, *(gr.Group(visible=n < count) for n in range(MIX_SLOTS))]

    def _slot_inputs(self) -> list[Any]:
        return [self.mix_count] + [c for s in self.slots for c in (s.kind, s.text, s.image, s.weight)]

    def _slot_outputs(self) -> list[Any]:
        return [c for s in self.slots for c in (s.group, s.kind, s.text, s.image, s.weight)]

    def _remove_slot(self, index: int) -> Callable[..., list[Any]]:
        def remove(request: gr.Request, count: int, *values: Any) -> list[Any]:
            """`request` first: Gradio injects it by position, and the slot values are variadic."""
            guard(self.studio, request)
            rows = [values[n * 4 : (n + 1) * 4] for n in range(MIX_SLOTS)][: int(count or 0)]
            if index < len(rows):
                rows.pop(index)
            out: list[Any] = [len(rows)]
            for n in range(MIX_SLOTS):
                kind, text, image, weight = rows[n] if n < len(rows) else ("text", "", None, 1.0)
                upload = uploaded_file(image, f"Ingredient {n + 1}")
                out += [gr.Group(visible=n < len(rows)), kind, text, str(upload) if upload else None, weight]
            return out

        return remove

    def _store_image(self, user: UserInfo, path: str | None, field: str) -> int | None:
        upload = uploaded_file(path, field)
        if upload is None:
            return None
        try:
            checked = check_image(upload.read_bytes())
        except ApiError as exc:
            raise user_error(f"{field}: {exc.detail}") from None
        return self.studio.storage.uploads.add(user.id, checked.data).id

    def job_request(self, user: UserInfo, data: dict[Any, Any]) -> JobRequest:
        """The form's values (by component) as the job service's request; added images become uploads."""
        width, height = (int(v) for v in str(data[self.size]).split("x"))
        seed = data[self.seed]
        mix: list[MixIngredientRef] = []
        for n, slot in enumerate(self.slots[: int(data[self.mix_count] or 0)]):
            weight = float(data[slot.weight])
            if data[slot.kind] == "image":
                upload_id = self._store_image(user, data[slot.image], f"Ingredient {n + 1}")
                if upload_id is None:
                    raise user_error(f"Ingredient {n + 1}: add an image or switch it to text")
                mix.append(MixIngredientRef(weight=weight, upload_id=upload_id))
            else:
                mix.append(MixIngredientRef(weight=weight, text=str(data[slot.text] or "")))
        guidance_id = self._store_image(user, data[self.guidance_image], "Guidance image")
        job = JobRequest(
            prompt=str(data[self.prompt] or ""),
            negative_prompt=str(data[self.negative] or ""),
            seed=None if seed is None or int(seed) == RANDOM_SEED else int(seed),
            steps=int(data[self.steps]),
            guidance_scale=float(data[self.cfg]),
            width=width,
            height=height,
            num_images=int(data[self.count]),
            scheduler=data[self.scheduler],
            guidance_upload_id=guidance_id,
            candidates=int(data[self.candidates]) if self.info.max_candidates > 1 else None,
            image_guidance_scale=float(data[self.guidance_scale]) if guidance_id is not None else 0.0,
            image_guidance_decay=data[self.guidance_decay] or "none",
            mix=tuple(mix),
            interpolation=float(data[self.interp]) if data[self.interp_on] else None,
            mix_space=str(data[self.mix_space]),
            upscale=bool(data[self.upscale]),
        )
        return self._with_lineage(job, data[self.loaded])

    @staticmethod
    def _with_lineage(job: JobRequest, loaded: dict[str, Any] | None) -> JobRequest:
        """Reuse the loaded prompt when it is unchanged (a counted use); Remix records the new one as its child."""
        if not loaded:
            return job
        if loaded.get("remix"):
            return replace(job, parent_prompt_id=loaded["prompt_id"])
        unchanged = (
            not loaded.get("has_images")
            and job.guidance_upload_id is None
            and job.prompt.strip() == loaded["text"]
            and job.negative_prompt.strip() == loaded["negative"]
            and [[i.weight, i.text] for i in job.mix] == loaded["mix"]
        )
        return replace(job, prompt_id=loaded["prompt_id"]) if unchanged else job

    def _generate(
        self,
        request: gr.Request,
        prompt: str,
        negative_prompt: str,
        seed: float,
        steps: float,
        guidance_scale: float,
        size: str,
        num_images: float,
        scheduler: str,
        candidates: float,
        upscale: bool,
        guidance_image: str | None,
        image_guidance_scale: float,
        image_guidance_decay: str,
        mix_count: int,
        interpolate: bool,
        interpolation: float,
        mix_space: str,
        loaded: dict[str, Any] | None,
        *mix_slots: Any,
    ) -> Iterator[dict[Any, Any]]:
        """Submit, then stream the progress panel (queue, stage, each image's steps, previews) until the final
        status is stored.

        `request` comes first because Gradio injects it by position and the mix slots are variadic;
        `mix_slots` is (kind, text, image, weight) for each slot of the mixing panel, in order."""
        user = guard(self.studio, request)
        data = dict(
            zip(
                self.generate_inputs,
                [
                    prompt,
                    negative_prompt,
                    seed,
                    steps,
                    guidance_scale,
                    size,
                    num_images,
                    scheduler,
                    candidates,
                    upscale,
                    guidance_image,
                    image_guidance_scale,
                    image_guidance_decay,
                    mix_count,
                    interpolate,
                    interpolation,
                    mix_space,
                    loaded,
                    *mix_slots,
                ],
                strict=True,
            )
        )
        try:
            generation = self.studio.jobs.submit(user, self.job_request(user, data))
        except RequestError as exc:
            raise user_error(f"{field_label(exc.field)}: {exc.message}") from None
        except (StorageError, ApiError, QueueFull, EngineClosed) as exc:
            raise ui_error(exc) from None
        self.studio.jobs.watch(generation.id)
        shown = progress_html(self.studio.jobs.progress(generation.id))
        yield {
            self.progress: shown,
            self.generation: generation.id,
            self.message: "",
            self.loaded: None if data[self.loaded] and data[self.loaded].get("remix") else data[self.loaded],
        }
        while not self.studio.jobs.wait(generation.id, POLL_S):
            panel = progress_html(self.studio.jobs.progress(generation.id))
            if panel != shown:
                shown = panel
                yield {self.progress: panel}
        final = self.studio.storage.generations.get(user.id, generation.id)
        yield self._show_results(final)

    def _show_results(self, generation: GenerationInfo) -> dict[Any, Any]:
        images = sorted(generation.images, key=lambda i: i.index)
        if generation.status != GenerationStatus.SUCCEEDED:
            detail = f": {generation.error}" if generation.error else ""
            return {
                self.progress: finished_html(
                    f"{generation.status.value.capitalize()}{detail}", succeeded=False
                )
            }
        paths = [self.files.image(image) for image in images]
        results: list[dict[str, Any]] = [
            {
                "id": image.id,
                "generation_id": generation.id,
                "path": path,
                "seed": image.seed,
                "status": image.review_status.value,
            }
            for image, path in zip(images, paths, strict=True)
        ]
        first = results[0]
        return {
            self.progress: finished_html(
                f"Done: {len(images)} image(s), seed {generation.seed}", succeeded=True
            ),
            self.gallery: gallery_items(results),
            self.results: results,
            self.selected: first["id"],
            self.recipe: png_parameters(first["path"]),
            self.download_btn: gr.DownloadButton(value=first["path"], interactive=True),
        }

    def _mark_selected(
        self, selected: int | None, results: list[dict[str, Any]], request: gr.Request
    ) -> list[Any]:
        """Mark the selected result in the gallery; Submit and Reuse act on it, usable only while there is one."""
        guard(self.studio, request)
        index = next((n for n, result in enumerate(results or []) if result["id"] == selected), None)
        return [gr.Gallery(selected_index=index), *[gr.Button(interactive=index is not None)] * 2]

    def _cancel(self, generation_id: int | None, request: gr.Request) -> str:
        user = guard(self.studio, request)
        if generation_id is None:
            return "Nothing to cancel."
        try:
            self.studio.jobs.cancel(user, int(generation_id))
        except StorageError as exc:
            raise ui_error(exc) from None
        return f"Cancelled generation #{generation_id}."

    def _select(self, results: list[dict[str, Any]], evt: gr.SelectData, request: gr.Request) -> list[Any]:
        guard(self.studio, request)
        if not results or evt.index is None or not 0 <= int(evt.index) < len(results):
            raise user_error("Select one of the results.")
        chosen = results[int(evt.index)]
        download = gr.DownloadButton(value=chosen["path"], interactive=True)
        return [
            chosen["id"],
            png_parameters(chosen["path"]),
            download,
            gr.Button(interactive=True),
            gr.Button(interactive=True),
        ]

    def _chosen(self, selected: int | None, results: list[dict[str, Any]]) -> dict[str, Any]:
        chosen = next((r for r in results or [] if r["id"] == selected), None)
        if chosen is None:
            raise user_error("Generate an image first, then select it.")
        return chosen

    def revising_values(self, image_id: int | None) -> dict[Any, Any]:
        """Remember (or forget, with None) the image the next submitted one revises, and say so."""
        note = (
            f"Revising image #{image_id}: the image you submit next is recorded as its revision."
            if image_id is not None
            else ""
        )
        return {self.revising: image_id, self.revising_note: note}

    def _submit(
        self, selected: int | None, results: list[dict[str, Any]], revising: int | None, request: gr.Request
    ) -> list[Any]:
        user = guard(self.studio, request)
        chosen = self._chosen(selected, results)
        try:
            image = self.studio.storage.reviews.submit(user.id, chosen["id"], revision_of=revising)
        except StorageError as exc:
            raise ui_error(exc) from None
        revises = f" as a revision of image #{image.revision_of}" if image.revision_of else ""
        done = self.revising_values(None)
        chosen["status"] = image.review_status.value
        return [
            f"Image #{image.id} is submitted for review{revises} ({image.review_status.value}).",
            results,
            done[self.revising],
            done[self.revising_note],
            gr.Gallery(value=gallery_items(results), selected_index=results.index(chosen)),
        ]

    def _reuse(
        self, selected: int | None, results: list[dict[str, Any]], request: gr.Request
    ) -> dict[Any, Any]:
        user = guard(self.studio, request)
        chosen = self._chosen(selected, results)
        try:
            return self.recipe_values(user, chosen["generation_id"], remix=False)
        except StorageError as exc:
            raise ui_error(exc) from None
