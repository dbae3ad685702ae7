"""The History tab (everyone): shared prompts and generations with search, filters and pages, a detail
view with the review history, Reuse (fills Generate), Remix (the next prompt records its parent),
favourites, and Submit for review of one's own drafts (optionally as a revision of an earlier image).

Results are cards with thumbnails rather than a wide table, so every field stays readable on a phone.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Callable
from typing import Any

import gradio as gr

from model.engine.request_fields import recorded_mix_space
from storage.errors import StorageError
from storage.metadata import mixing_settings, upscale_text
from storage.types import (
    GenerationInfo,
    GenerationStatus,
    HistoryItem,
    HistoryQuery,
    PromptInfo,
    ReviewStatus,
    UserInfo,
)
from webapp.context import Studio
from webapp.ui.common import (
    ImageFiles,
    escape_md,
    guard,
    parse_day,
    plain_markdown,
    thumbnail_img,
    ui_error,
    user_error,
    when,
)
from webapp.ui.generate import GenerateTab

PAGE_SIZE = 10
ANY = "any"
STATUS_CHOICES = [ANY] + [s.value for s in ReviewStatus] + [s.value for s in GenerationStatus]
THUMBNAILS_PER_CARD = 4
CARD_CLICKS_JS = """
element.addEventListener('click', (event) => {
  const card = event.target.closest('[data-index]');
  if (card) trigger('click', {index: Number(card.dataset.index)});
});
"""
"""A click on a result card sends its position (gr.HTML's own click carries no data)."""


def review_summary(generation: GenerationInfo) -> str:
    counts = Counter(image.review_status.value for image in generation.images)
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def card(index: int, item: HistoryItem, files: ImageFiles) -> str:
    """One result as a card: thumbnails, then every field a table row had, each on its own line."""
    generation = item.generation
    images = [i for i in sorted(generation.images, key=lambda i: i.index) if not i.file_missing]
    thumbs = "".join(
        thumbnail_img(files.image(image), f"image #{image.id}") for image in images[:THUMBNAILS_PER_CARD]
    )
    prompt = html.escape(item.prompt.text) if item.prompt.text.strip() else "<i>(mix only)</i>"
    star = ' <span class="favourite" title="favourite">★</span>' if item.favourite else ""
    return (
        f'<button type="button" class="history-card" data-index="{index}">'
        f'<span class="thumbs">{thumbs}</span>'
        f"<span><b>#{generation.id}</b> {prompt}{star}</span>"
        f"<span>by {html.escape(generation.username)} · {when(generation.created_at)}</span>"
        f"<span>{html.escape(generation.status.value)} · review: "
        f"{html.escape(review_summary(generation) if generation.images else 'no images')}</span></button>"
    )


def cards(items: tuple[HistoryItem, ...], files: ImageFiles) -> str:
    if not items:
        return "<p>No generations match.</p>"
    return f'<div class="history-cards">{"".join(card(n, item, files) for n, item in enumerate(items))}</div>'


class HistoryTab:
    def __init__(self, studio: Studio, files: ImageFiles, generate: GenerateTab, tabs: gr.Tabs) -> None:
        self.studio = studio
        self.files = files
        self.generate = generate
        self.tabs = tabs
        with gr.Row():
            self.text = gr.Textbox(label="Search prompts", elem_id="history-search", scale=3)
            self.scope = gr.Radio(
                ["everyone", "mine"], value="everyone", label="Whose", elem_id="history-scope"
            )
            self.status = gr.Dropdown(STATUS_CHOICES, value=ANY, label="Status", elem_id="history-status")
            self.favourites = gr.Checkbox(label="Favourites only", elem_id="history-favourites")
        with gr.Row():
            self.date_from = gr.Textbox(label="From (YYYY-MM-DD)", elem_id="history-from")
            self.date_to = gr.Textbox(label="To (YYYY-MM-DD)", elem_id="history-to")
            self.search = gr.Button("Search", variant="primary", elem_id="history-search-btn")
        self.results = gr.HTML("", elem_id="history-results", js_on_load=CARD_CLICKS_JS)
        with gr.Row():
            self.prev = gr.Button("Previous page", size="sm", elem_id="history-prev")
            self.page_label = plain_markdown("", elem_id="history-page")
            self.next = gr.Button("Next page", size="sm", elem_id="history-next")
        with gr.Row():
            with gr.Column(scale=2):
                self.detail = plain_markdown("Select a result to see its details.", elem_id="history-detail")
                self.reviews = plain_markdown("", elem_id="history-reviews")
                with gr.Row():
                    self.reuse = gr.Button("Reuse", elem_id="history-reuse-btn")
                    self.remix = gr.Button("Remix", elem_id="history-remix-btn")
                    self.favourite = gr.Button("Favourite ★ / unfavourite", elem_id="history-fav-btn")
            with gr.Column(scale=2):
                self.gallery = gr.Gallery(
                    label="Images (select one to submit it)",
                    columns=2,
                    height=260,
                    format="png",
                    allow_preview=False,
                    elem_id="history-gallery",
                    interactive=False,
                )
                with gr.Row():
                    self.revision_of = gr.Textbox(
                        label="As a revision of image # (optional)",
                        value="",
                        placeholder="an earlier image id",
                        elem_id="history-revision-of",
                    )
                    self.submit = gr.Button("Submit for review", variant="primary", elem_id="history-submit")
                self.message = plain_markdown("", elem_id="history-message")
        self.ids = gr.State([])
        self.page = gr.State(1)
        self.current = gr.State(None)
        self.image_ids = gr.State([])
        self.image = gr.State(None)
        self._wire()

    @property
    def filters(self) -> list[Any]:
        return [self.text, self.scope, self.status, self.favourites, self.date_from, self.date_to]

    def _wire(self) -> None:
        listing = [self.results, self.ids, self.page, self.page_label]
        self.search.click(self.first_page, inputs=self.filters, outputs=listing, api_name="history_search")
        self.text.submit(
            self.first_page,
            inputs=self.filters,
            outputs=listing,
            api_name="history_search_enter",
            api_visibility="undocumented",
        )
        self.prev.click(
            self._turn_page(-1), inputs=[*self.filters, self.page], outputs=listing, api_name="history_prev"
        )
        self.next.click(
            self._turn_page(+1), inputs=[*self.filters, self.page], outputs=listing, api_name="history_next"
        )
        detail = [self.current, self.detail, self.reviews, self.gallery, self.image_ids, self.image]
        self.results.click(self._select, inputs=[self.ids], outputs=detail, api_name="history_select")
        self.gallery.select(
            self._pick_image, inputs=[self.image_ids], outputs=[self.image], api_name="history_pick_image"
        )
        self.submit.click(
            self._submit,
            inputs=[self.current, self.image, self.image_ids, self.revision_of, *self.filters, self.page],
            outputs=[self.message, self.revision_of, *listing, *detail],
            api_name="history_submit",
        )
        self.reuse.click(
            self._loader(remix=False),
            inputs=[self.current],
            outputs=[*self.generate.form, self.tabs],
            api_name="history_reuse",
        )
        self.remix.click(
            self._loader(remix=True),
            inputs=[self.current],
            outputs=[*self.generate.form, self.tabs],
            api_name="history_remix",
        )
        self.favourite.click(
            self._toggle_favourite,
            inputs=[self.current, *self.filters, self.page],
            outputs=[*listing, *detail],
            api_name="history_favourite",
        )

    def listing(
        self,
        user: UserInfo,
        text: str,
        scope: str,
        status: str,
        favourites: bool,
        date_from: str,
        date_to: str,
        page: int,
    ) -> list[Any]:
        review_status = ReviewStatus(status) if status in {s.value for s in ReviewStatus} else None
        generation_status = (
            GenerationStatus(status) if status in {s.value for s in GenerationStatus} else None
        )
        query = HistoryQuery(
            text=text or "",
            mine=scope == "mine",
            review_status=review_status,
            status=generation_status,
            favourites_only=bool(favourites),
            created_from=parse_day(date_from, "From"),
            created_to=parse_day(date_to, "To", end=True),
            page=max(1, int(page)),
            page_size=PAGE_SIZE,
        )
        found = self.studio.storage.history.search(user.id, query)
        if found.page > found.pages and found.total:  # past the end (the list shrank): show the last page
            return self.listing(user, text, scope, status, favourites, date_from, date_to, found.pages)
        label = f"Page {found.page} of {found.pages} · {found.total} generation(s)"
        return [
            cards(found.items, self.files),
            [item.generation.id for item in found.items],
            found.page,
            label,
        ]

    def first_page(
        self,
        text: str,
        scope: str,
        status: str,
        favourites: bool,
        date_from: str,
        date_to: str,
        request: gr.Request,
    ) -> list[Any]:
        user = guard(self.studio, request)
        try:
            return self.listing(user, text, scope, status, favourites, date_from, date_to, 1)
        except StorageError as exc:
            raise ui_error(exc) from None

    def _turn_page(self, step: int) -> Callable[..., list[Any]]:
        def search(
            text: str,
            scope: str,
            status: str,
            favourites: bool,
            date_from: str,
            date_to: str,
            page: int,
            request: gr.Request,
        ) -> list[Any]:
            user = guard(self.studio, request)
            try:
                return self.listing(
                    user, text, scope, status, favourites, date_from, date_to, max(1, int(page or 1) + step)
                )
            except StorageError as exc:
                raise ui_error(exc) from None

        return search

    def details(self, user: UserInfo, generation_id: int) -> list[Any]:
        storage = self.studio.storage
        generation = storage.generations.get(user.id, generation_id)
        prompt = storage.prompts.get(user.id, generation.prompt_id)
        lineage = f" · remix of prompt #{prompt.parent_id}" if prompt.parent_id else ""
        mixing = self._mixing(user, prompt, generation.params)
        first = min(generation.images, key=lambda i: i.index, default=None)
        size = f"{generation.params.get('width')}x{generation.params.get('height')}"
        if first is not None:  # an upscaled generation's images are larger than the size it asked for
            size = upscale_text(generation.params, first.width, first.height) or size
        shown_prompt = (
            escape_md(prompt.text)
            if prompt.text.strip() or "Mix" not in mixing
            else f"(mix only) {escape_md(mixing['Mix'])}"
        )
        text = (
            f"**Generation #{generation.id}** by **{escape_md(generation.username)}**, "
            f"{when(generation.created_at)} · {generation.status.value}{lineage}\n\n"
            f"**Prompt:** {shown_prompt or '(empty)'}\n\n"
            + (f"**Negative:** {escape_md(prompt.negative_prompt)}\n\n" if prompt.negative_prompt else "")
            + "".join(f"**{key}:** {escape_md(value)}\n\n" for key, value in mixing.items())
            + f"**Seed:** {generation.seed} · **Steps:** {generation.params.get('steps')} · "
            f"**CFG:** {generation.params.get('guidance_scale')} · "
            f"**Size:** {size} · "
            f"used {prompt.use_count} time(s)"
            + (f"\n\n**Error:** {escape_md(generation.error)}" if generation.error else "")
        )
        lines = []
        images = sorted(generation.images, key=lambda i: i.index)
        for image in images:
            decisions = storage.reviews.history(user.id, image.id)
            lines.append(f"- Image #{image.id} (seed {image.seed}): **{image.review_status.value}**")
            lines += [
                f"  - {when(r.created_at)} {escape_md(r.reviewer)}: {r.decision.value}"
                + (f", \u201c{escape_md(r.comment)}\u201d" if r.comment else "")
                for r in decisions
            ]
        shown = [image for image in images if not image.file_missing]
        gallery = [(self.files.image(image), f"#{image.id} · {image.review_status.value}") for image in shown]
        only = shown[0].id if len(shown) == 1 else None  # a single image needs no picking
        return [
            generation.id,
            text,
            "\n".join(lines) or "No images.",
            gr.Gallery(value=gallery, selected_index=0 if only else None),
            [i.id for i in shown],
            only,
        ]

    def _mixing(self, user: UserInfo, prompt: PromptInfo, params: dict[str, Any]) -> dict[str, str]:
        """Image guidance, the mix and interpolation as the PNG's A1111 recipe writes them (images by short hash)."""
        uploads = self.studio.storage.uploads

        def sha256(upload_id: int | None) -> str | None:
            try:
                return None if upload_id is None else uploads.get(user.id, upload_id).sha256
            except StorageError:  # removed since: the recipe still says an image was there
                return None

        guidance = prompt.guidance
        return mixing_settings(
            None
            if guidance is None
            else {
                "upload_sha256": sha256(guidance.upload_id),
                "scale": guidance.scale,
                "decay": guidance.decay.value,
            },
            [
                {"weight": item.weight, "text": item.text}
                if item.text is not None
                else {"weight": item.weight, "upload_sha256": sha256(item.upload_id)}
                for item in prompt.mix
            ],
            params.get("interpolation"),
            recorded_mix_space(params),
        )

    def _select(self, ids: list[int], evt: gr.EventData, request: gr.Request) -> list[Any]:
        user = guard(self.studio, request)
        index = getattr(evt, "index", None)
        if not ids or not isinstance(index, int) or not 0 <= index < len(ids):
            raise user_error("Select one of the results.")
        try:
            return self.details(user, ids[int(index)])
        except StorageError as exc:
            raise ui_error(exc) from None

    def _loader(self, *, remix: bool) -> Callable[..., dict[Any, Any]]:
        def load(generation_id: int | None, request: gr.Request) -> dict[Any, Any]:
            user = guard(self.studio, request)
            if generation_id is None:
                raise user_error("Select one of the results first.")
            try:
                values = self.generate.recipe_values(user, int(generation_id), remix=remix)
            except StorageError as exc:
                raise ui_error(exc) from None
            values[self.tabs] = gr.Tabs(selected="generate")
            gr.Info(
                "Remix: your next generation records this prompt as its parent."
                if remix
                else "The recipe is in the Generate tab."
            )
            return values

        return load

    def _toggle_favourite(
        self,
        generation_id: int | None,
        text: str,
        scope: str,
        status: str,
        favourites: bool,
        date_from: str,
        date_to: str,
        page: int,
        request: gr.Request,
    ) -> list[Any]:
        user = guard(self.studio, request)
        if generation_id is None:
            raise user_error("Select one of the results first.")
        storage = self.studio.storage
        try:
            generation = storage.generations.get(user.id, int(generation_id))
            starred = {p.id for p in storage.prompts.favourites(user.id)}
            storage.prompts.set_favourite(user.id, generation.prompt_id, generation.prompt_id not in starred)
            return [
                *self.listing(user, text, scope, status, favourites, date_from, date_to, page),
                *self.details(user, generation.id),
            ]
        except StorageError as exc:
            raise ui_error(exc) from None

    def _pick_image(self, image_ids: list[int], evt: gr.SelectData, request: gr.Request) -> int:
        guard(self.studio, request)
        if not image_ids or evt.index is None or not 0 <= int(evt.index) < len(image_ids):
            raise user_error("Select one of the images.")
        return image_ids[int(evt.index)]

    def _submit(
        self,
        generation_id: int | None,
        image_id: int | None,
        image_ids: list[int],
        revision_of: str,
        text: str,
        scope: str,
        status: str,
        favourites: bool,
        date_from: str,
        date_to: str,
        page: int,
        request: gr.Request,
    ) -> list[Any]:
        """Submit the picked image of one's own generation for review, optionally as a revision."""
        user = guard(self.studio, request)
        if generation_id is None:
            raise user_error("Select one of the results first.")
        if image_id is None or image_id not in (image_ids or []):
            raise user_error("Select the image to submit.")
        revises_id = (revision_of or "").strip().lstrip("#")
        if revises_id and not revises_id.isdigit():
            raise user_error(
                "As a revision of image #: give the number of an earlier image, or leave it empty."
            )
        storage = self.studio.storage
        try:
            image = storage.reviews.submit(
                user.id, int(image_id), revision_of=int(revises_id) if revises_id else None
            )
            listing = self.listing(user, text, scope, status, favourites, date_from, date_to, page)
            detail = self.details(user, int(generation_id))
        except StorageError as exc:
            raise ui_error(exc) from None
        revises = f" as a revision of image #{image.revision_of}" if image.revision_of else ""
        return [f"Image #{image.id} is submitted for review{revises}.", "", *listing, *detail]
