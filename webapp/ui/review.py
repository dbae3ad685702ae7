"""The Review tab (reviewers and admins): the pending queue, never one's own images, with decisions.

The queue comes from the shared history filtered to pending images, so author and date filters run
in the database; one's own images are left out here and refused again by the review service.
For the selected image the reviewer sees everything that made it: the picture large and crisp, the
recipe written out (guidance image and mix ingredients as thumbnails), the other images of the same
generation, the images it revises, and earlier decisions on it and on its prompt. Keys A/R/C decide,
J/K move through the queue (webapp/ui/assets.py); after a decision the queue moves on by itself.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from model.engine.request_fields import recorded_mix_space
from storage.errors import StorageError
from storage.metadata import upscale_text
from storage.types import (
    GenerationInfo,
    HistoryQuery,
    HistorySort,
    ImageInfo,
    PromptInfo,
    ReviewInfo,
    ReviewStatus,
    UserInfo,
)
from webapp.auth import STAFF
from webapp.context import Studio
from webapp.ui.common import (
    EXPORT_MAX_AGE_S,
    ImageFiles,
    TempFolder,
    export_zip,
    guard,
    parse_day,
    plain_markdown,
    thumbnail_img,
    ui_error,
    user_error,
    when,
)

QUEUE_LIMIT = 100
DECISIONS = {"approve": "Approved", "reject": "Rejected", "request_changes": "Changes requested for"}
NOTHING_SELECTED = "<p>Select an image from the queue.</p>"
PROMPT_DECISIONS_SHOWN = 10


def _row(label: str, value: str) -> str:
    """One line of the recipe; `value` is HTML the caller escaped."""
    return f"<dt>{html.escape(label)}</dt><dd>{value}</dd>"


def _decision_line(review: ReviewInfo, *, image: bool = False) -> str:
    comment = f": \u201c{html.escape(review.comment)}\u201d" if review.comment else ""
    on = f" on image #{review.image_id}" if image else ""
    return (
        f"<li><b>{html.escape(review.decision.value.replace('_', ' '))}</b>{on} by "
        f"{html.escape(review.reviewer)}, {when(review.created_at)}{comment}</li>"
    )


class ReviewTab:
    def __init__(self, studio: Studio, files: ImageFiles) -> None:
        self.studio = studio
        self.files = files
        self.exports = TempFolder("draftroom-review-export-", EXPORT_MAX_AGE_S)
        with gr.Row():
            self.author = gr.Textbox(
                label="Author", placeholder="any", elem_id="review-author", min_width=120
            )
            self.date_from = gr.Textbox(label="From (YYYY-MM-DD)", elem_id="review-from", min_width=120)
            self.date_to = gr.Textbox(label="To (YYYY-MM-DD)", elem_id="review-to", min_width=120)
            self.refresh = gr.Button("Refresh", elem_id="review-refresh", min_width=100)
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=300):
                self.image = gr.Image(
                    label="Selected image",
                    type="filepath",
                    format="png",
                    interactive=False,
                    height=448,
                    elem_id="review-image",
                )
                with gr.Row():
                    self.prev = gr.Button(
                        "\u25c0 Previous (K)", size="sm", elem_id="review-prev", min_width=100
                    )
                    self.next = gr.Button("Next (J) \u25b6", size="sm", elem_id="review-next", min_width=100)
                self.gallery = gr.Gallery(
                    label="Pending review",
                    columns=6,
                    height=180,
                    fit_columns=False,
                    object_fit="contain",
                    format="png",
                    allow_preview=False,
                    elem_id="review-gallery",
                    interactive=False,
                )
                self.count = plain_markdown("", elem_id="review-count")
            with gr.Column(scale=2, min_width=300):
                self.recipe = gr.HTML(NOTHING_SELECTED, elem_id="review-recipe")
                self.comment = gr.Textbox(
                    label="Comment (needed to reject or request changes)", lines=2, elem_id="review-comment"
                )
                with gr.Row():
                    self.approve = gr.Button(
                        "Approve (A)", variant="primary", elem_id="review-approve", min_width=90
                    )
                    self.reject = gr.Button(
                        "Reject (R)", variant="stop", elem_id="review-reject", min_width=90
                    )
                    self.changes = gr.Button("Request changes (C)", elem_id="review-changes", min_width=90)
                self.message = plain_markdown("", elem_id="review-message")
                plain_markdown(
                    "Keys, outside text fields: **A** approve · **R** reject · **C** request changes · "
                    "**J** / **K** next / previous.",
                    elem_id="review-keys",
                )
        self.context = gr.HTML("", elem_id="review-context")
        with gr.Accordion("Export approved images", open=False, elem_id="review-export-panel"), gr.Row():
            self.export = gr.Button("Export approved images (zip)", elem_id="review-export")
            self.export_file = gr.File(label="Export", interactive=False, elem_id="review-export-file")
        self.items = gr.State([])
        self.selected = gr.State(None)
        self._wire()

    @property
    def filters(self) -> list[Any]:
        return [self.author, self.date_from, self.date_to]

    @property
    def shown(self) -> list[Any]:
        """What a (re)load of the queue fills."""
        return [self.gallery, self.items, self.selected, self.image, self.recipe, self.context, self.count]

    def _wire(self) -> None:
        self.refresh.click(self.load, inputs=self.filters, outputs=self.shown, api_name="review_queue")
        picked = [self.gallery, self.selected, self.image, self.recipe, self.context]
        self.gallery.select(self._select, inputs=[self.items], outputs=picked, api_name="review_select")
        self.next.click(
            self._stepper(+1), inputs=[self.items, self.selected], outputs=picked, api_name="review_next"
        )
        self.prev.click(
            self._stepper(-1), inputs=[self.items, self.selected], outputs=picked, api_name="review_prev"
        )
        for button, decision in (
            (self.approve, "approve"),
            (self.reject, "reject"),
            (self.changes, "request_changes"),
        ):
            button.click(
                self._decider(decision),
                inputs=[self.items, self.selected, self.comment, *self.filters],
                outputs=[self.message, self.comment, *self.shown],
                api_name=f"review_{decision}",
            )
        self.export.click(self._export, outputs=[self.export_file], api_name="review_export")

    # The queue ---------------------------------------------------------------------------------

    def _queue(self, user: UserInfo, author: str, date_from: str, date_to: str) -> list[dict[str, Any]]:
        query = HistoryQuery(
            author=author.strip() or None,
            review_status=ReviewStatus.PENDING,
            created_from=parse_day(date_from, "From"),
            created_to=parse_day(date_to, "To", end=True),
            sort=HistorySort.OLDEST,
            page_size=QUEUE_LIMIT,
        )
        page = self.studio.storage.history.search(user.id, query)
        items = []
        for entry in page.items:
            generation = entry.generation
            if generation.user_id == user.id:  # four-eyes: never offered one's own images
                continue
            for image in generation.images:
                if image.review_status == ReviewStatus.PENDING and not image.file_missing:
                    items.append(
                        {
                            "id": image.id,
                            "path": self.files.image(image),
                            "author": generation.username,
                        }
                    )
        return items

    def _view(self, user: UserInfo, items: list[dict[str, Any]], index: int, *, refill: bool) -> list[Any]:
        """The queue with item `index` selected: gallery marking, big image, recipe and context."""
        selected = items[index] if items else None
        gallery = (
            gr.Gallery(
                value=[(i["path"], f"#{i['id']} \u00b7 {i['author']}") for i in items],
                selected_index=index if selected else None,
            )
            if refill
            else gr.Gallery(selected_index=index)
        )
        if selected is None:
            return [gallery, None, None, NOTHING_SELECTED, ""]
        try:
            return [gallery, selected["id"], *self.panel(user, int(selected["id"]))]
        except StorageError as exc:
            raise ui_error(exc) from None

    def load(self, author: str, date_from: str, date_to: str, request: gr.Request) -> list[Any]:
        """The pending queue, its first image selected."""
        return self._reload(guard(self.studio, request, STAFF), author, date_from, date_to, keep=0)

    def _reload(self, user: UserInfo, author: str, date_from: str, date_to: str, *, keep: int) -> list[Any]:
        """The pending queue with the image at position `keep` selected (the next one after a decision)."""
        try:
            items = self._queue(user, author or "", date_from or "", date_to or "")
        except StorageError as exc:
            raise ui_error(exc) from None
        index = min(keep, len(items) - 1) if items else 0
        gallery, selected, *panel = self._view(user, items, index, refill=True)
        count = f"{len(items)} image(s) waiting" if items else "Nothing is waiting for review."
        return [gallery, items, selected, *panel, count]

    def _select(self, items: list[dict[str, Any]], evt: gr.SelectData, request: gr.Request) -> list[Any]:
        user = guard(self.studio, request, STAFF)
        if not items or evt.index is None or not 0 <= int(evt.index) < len(items):
            raise user_error("Select an image from the queue.")
        return self._view(user, items, int(evt.index), refill=False)

    def _stepper(self, step: int) -> Callable[..., list[Any]]:
        def move(items: list[dict[str, Any]], selected: int | None, request: gr.Request) -> list[Any]:
            user = guard(self.studio, request, STAFF)
            if not items:
                raise user_error("Nothing is waiting for review.")
            index = _position(items, selected)
            return self._view(
                user, items, (index + step) % len(items) if index is not None else 0, refill=False
            )

        return move

    def _decider(self, decision: str) -> Callable[..., list[Any]]:
        def decide(
            items: list[dict[str, Any]],
            image_id: int | None,
            comment: str,
            author: str,
            date_from: str,
            date_to: str,
            request: gr.Request,
        ) -> list[Any]:
            user = guard(self.studio, request, STAFF)
            if image_id is None:
                raise user_error("Select an image from the queue first.")
            try:
                self.studio.storage.reviews.decide(user.id, int(image_id), decision, comment or "")
            except StorageError as exc:
                raise ui_error(exc) from None
            keep = _position(items, image_id) or 0  # the decided image leaves; its successor takes its place
            return [
                f"{DECISIONS[decision]} image #{image_id}.",
                "",
                *self._reload(user, author, date_from, date_to, keep=keep),
            ]

        return decide

    def _export(self, request: gr.Request) -> str:
        user = guard(self.studio, request, STAFF)
        return export_zip(self.studio, user, ReviewStatus.APPROVED.value, self.exports)

    # The selected image ------------------------------------------------------------------------

    def panel(self, user: UserInfo, image_id: int) -> list[Any]:
        """[big image path, recipe HTML, context HTML] for one image, read fresh from storage."""
        storage = self.studio.storage
        image = storage.generations.image(user.id, image_id)
        generation = storage.generations.get(user.id, image.generation_id)
        prompt = storage.prompts.get(user.id, generation.prompt_id)
        return [
            self.files.image(image),
            self.recipe_html(user, generation, prompt, image),
            self.context_html(user, generation, prompt, image),
        ]

    def _upload_path(self, user: UserInfo, upload_id: int) -> Path | None:
        storage = self.studio.storage
        try:
            return storage.upload_store.path_for(storage.uploads.get(user.id, upload_id).sha256)
        except StorageError:
            return None

    def recipe_html(
        self, user: UserInfo, generation: GenerationInfo, prompt: PromptInfo, image: ImageInfo
    ) -> str:
        """The recipe written for a person: every setting that made the image, images as thumbnails."""
        params = generation.params
        rows = [
            _row("Prompt", html.escape(prompt.text) if prompt.text.strip() else "<i>(mix only)</i>"),
            *([_row("Negative", html.escape(prompt.negative_prompt))] if prompt.negative_prompt else []),
            _row("Seed", html.escape(str(image.seed))),
            _row("Steps", html.escape(str(params.get("steps")))),
            _row("CFG", html.escape(str(params.get("guidance_scale")))),
            _row("Scheduler", html.escape(str(params.get("scheduler") or "model default"))),
            _row("Candidates", html.escape(str(params.get("candidates") or 1))),
            _row("Size", html.escape(f"{image.width}\u00d7{image.height}")),
            *(
                [_row("Upscaled", html.escape(upscaled))]
                if (upscaled := upscale_text(params, image.width, image.height))
                else []
            ),
            _row(
                "Model",
                f"{html.escape(generation.model_id)} <code>{html.escape(generation.model_hash[:10])}</code>",
            ),
        ]
        if prompt.guidance is not None:
            guide = thumbnail_img(self._upload_path(user, prompt.guidance.upload_id), "guidance image")
            rows.append(
                _row(
                    "Guidance image",
                    f'<span class="guidance">{guide} scale '
                    f"{prompt.guidance.scale:g} \u00b7 decay "
                    f"{html.escape(prompt.guidance.decay.value)}</span>",
                )
            )
        if prompt.mix:
            ingredients = []
            for item in prompt.mix:
                what = (
                    f"\u201c{html.escape(item.text)}\u201d"
                    if item.text is not None
                    else thumbnail_img(self._upload_path(user, int(item.upload_id or 0)), "mix image")
                )
                ingredients.append(f"<li>{what} \u00b7 weight {item.weight:g}</li>")
            interpolation = params.get("interpolation")
            blend = (
                f"<p>Interpolated at {float(interpolation):g} between the two.</p>"
                if interpolation is not None
                else ""
            ) + f"<p>Texts mixed in {recorded_mix_space(params)} space.</p>"
            rows.append(_row("Mix", f'<ul class="mix">{"".join(ingredients)}</ul>{blend}'))
        if image.revision_of is not None:
            rows.append(_row("Revision of", f"image #{image.revision_of}"))
        title = (
            f"Image #{image.id} by {html.escape(generation.username)}, {when(generation.created_at)} "
            f"\u00b7 {html.escape(image.review_status.value)}"
        )
        return f'<div class="recipe"><h4>{title}</h4><dl>{"".join(rows)}</dl></div>'

    def context_html(
        self, user: UserInfo, generation: GenerationInfo, prompt: PromptInfo, image: ImageInfo
    ) -> str:
        """The same generation's images, what this image revises, and earlier decisions on it and its prompt."""
        reviews = self.studio.storage.reviews
        figures = []
        for other in sorted(generation.images, key=lambda i: i.index):
            path = None if other.file_missing else self.studio.storage.images.path_for(other.sha256)
            marker = " (this one)" if other.id == image.id else ""
            figures.append(
                f'<figure class="{"current" if other.id == image.id else ""}">'
                f"{thumbnail_img(path, f'image #{other.id}')}"
                f"<figcaption>#{other.id}{marker} \u00b7 {html.escape(other.review_status.value)}"
                "</figcaption></figure>"
            )
        parts = [f'<h4>Same generation (#{generation.id})</h4><div class="siblings">{"".join(figures)}</div>']
        lineage = reviews.lineage(user.id, image.id)
        if lineage:
            steps = []
            for earlier in lineage:
                path = None if earlier.file_missing else self.studio.storage.images.path_for(earlier.sha256)
                said = "".join(_decision_line(r) for r in reviews.history(user.id, earlier.id))
                steps.append(
                    f"<li>{thumbnail_img(path, f'image #{earlier.id}')} image #{earlier.id} "
                    f"\u00b7 {html.escape(earlier.review_status.value)}<ul>{said}</ul></li>"
                )
            parts.append(f'<h4>Revises</h4><ol class="lineage">{"".join(steps)}</ol>')
        on_image = reviews.history(user.id, image.id)
        parts.append(
            "<h4>Earlier decisions on this image</h4>"
            + (f"<ul>{''.join(_decision_line(r) for r in on_image)}</ul>" if on_image else "<p>None.</p>")
        )
        on_prompt = [
            r for r in reviews.on_prompt(user.id, prompt.id, PROMPT_DECISIONS_SHOWN) if r.image_id != image.id
        ]
        parts.append(
            "<h4>Earlier decisions on this prompt</h4>"
            + (
                f"<ul>{''.join(_decision_line(r, image=True) for r in on_prompt)}</ul>"
                if on_prompt
                else "<p>None.</p>"
            )
        )
        return f'<div class="review-context">{"".join(parts)}</div>'


def _position(items: list[dict[str, Any]], image_id: int | None) -> int | None:
    return next((n for n, item in enumerate(items) if item["id"] == image_id), None)
