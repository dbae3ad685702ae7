"""The Review tab (reviewers and admins): the pending queue, never one's own images, with decisions.

The queue comes from the shared history filtered to pending images, so author and date filters run
in the database; one's own images are left out here and refused again by the review service.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import gradio as gr

from storage.errors import StorageError
from storage.types import HistoryQuery, HistorySort, ReviewStatus, UserInfo
from webapp.auth import STAFF
from webapp.context import Studio
from webapp.ui.common import ImageFiles, escape_md, guard, parse_day, ui_error, when

QUEUE_LIMIT = 100
DECISIONS = {"approve": "Approved", "reject": "Rejected", "request_changes": "Changes requested for"}


class ReviewTab:
    def __init__(self, studio: Studio, files: ImageFiles) -> None:
        self.studio = studio
        self.files = files
        with gr.Row():
            self.author = gr.Textbox(label="Author", placeholder="any", elem_id="review-author")
            self.date_from = gr.Textbox(label="From (YYYY-MM-DD)", elem_id="review-from")
            self.date_to = gr.Textbox(label="To (YYYY-MM-DD)", elem_id="review-to")
            self.refresh = gr.Button("Refresh", elem_id="review-refresh")
        with gr.Row():
            with gr.Column(scale=3):
                self.gallery = gr.Gallery(label="Pending review", columns=4, height=320, format="png",
                                          elem_id="review-gallery", interactive=False)
                self.count = gr.Markdown("", elem_id="review-count")
            with gr.Column(scale=2):
                self.detail = gr.Markdown("Select an image.", elem_id="review-detail")
                self.comment = gr.Textbox(label="Comment", lines=2, elem_id="review-comment")
                with gr.Row():
                    self.approve = gr.Button("Approve", variant="primary", elem_id="approve-btn")
                    self.reject = gr.Button("Reject", variant="stop", elem_id="reject-btn")
                    self.changes = gr.Button("Request changes", elem_id="request-changes-btn")
                self.message = gr.Markdown("", elem_id="review-message")
        self.items = gr.State([])
        self.selected = gr.State(None)
        self._wire()

    def _wire(self) -> None:
        filters = [self.author, self.date_from, self.date_to]
        shown = [self.gallery, self.items, self.selected, self.detail, self.count]
        self.refresh.click(self.load, inputs=filters, outputs=shown, api_name="review_queue")
        self.gallery.select(self._select, inputs=[self.items], outputs=[self.selected, self.detail],
                            api_name="review_select")
        for button, decision in ((self.approve, "approve"), (self.reject, "reject"),
                                 (self.changes, "request_changes")):
            button.click(self._decider(decision), inputs=[self.selected, self.comment, *filters],
                         outputs=[self.message, self.comment, *shown], api_name=f"review_{decision}")

    def _queue(self, user: UserInfo, author: str, date_from: str, date_to: str) -> list[dict[str, Any]]:
        query = HistoryQuery(author=author.strip() or None, review_status=ReviewStatus.PENDING,
                             created_from=parse_day(date_from, "From"), created_to=parse_day(date_to, "To", end=True),
                             sort=HistorySort.OLDEST, page_size=QUEUE_LIMIT)
        page = self.studio.storage.history.search(user.id, query)
        items = []
        for entry in page.items:
            generation, prompt = entry.generation, entry.prompt
            if generation.user_id == user.id:  # four-eyes: never offered one's own images
                continue
            for image in generation.images:
                if image.review_status == ReviewStatus.PENDING and not image.file_missing:
                    items.append({"id": image.id, "path": self.files.image(image), "author": generation.username,
                                  "prompt": prompt.text, "negative": prompt.negative_prompt,
                                  "created": when(generation.created_at), "seed": image.seed,
                                  "params": generation.params})
        return items

    def load(self, author: str, date_from: str, date_to: str, request: gr.Request) -> list[Any]:
        user = guard(self.studio, request, STAFF)
        try:
            items = self._queue(user, author or "", date_from or "", date_to or "")
        except StorageError as exc:
            raise ui_error(exc) from None
        gallery = [(item["path"], f"#{item['id']} · {item['author']}") for item in items]
        first = items[0] if items else None
        return [gallery, items, first["id"] if first else None, describe(first),
                f"{len(items)} image(s) waiting" if items else "Nothing is waiting for review."]

    def _select(self, items: list[dict[str, Any]], evt: gr.SelectData, request: gr.Request) -> list[Any]:
        guard(self.studio, request, STAFF)
        if not items or evt.index is None or not 0 <= int(evt.index) < len(items):
            raise gr.Error("Select an image from the queue.")
        item = items[int(evt.index)]
        return [item["id"], describe(item)]

    def _decider(self, decision: str) -> Callable[..., list[Any]]:
        def decide(image_id: int | None, comment: str, author: str, date_from: str, date_to: str,
                   request: gr.Request) -> list[Any]:
            user = guard(self.studio, request, STAFF)
            if image_id is None:
                raise gr.Error("Select an image from the queue first.")
            try:
                self.studio.storage.reviews.decide(user.id, int(image_id), decision, comment or "")
            except StorageError as exc:
                raise ui_error(exc) from None
            return [f"{DECISIONS[decision]} image #{image_id}.", "",
                    *self.load(author, date_from, date_to, request)]
        return decide


def describe(item: dict[str, Any] | None) -> str:
    if item is None:
        return "Select an image."
    params = {k: item["params"].get(k) for k in ("steps", "guidance_scale", "width", "height", "scheduler",
                                                  "candidates", "image_guidance_scale", "mix", "interpolation")}
    negative = f"\n\n**Negative:** {escape_md(item['negative'])}" if item["negative"] else ""
    return (f"**Image #{item['id']}** by **{escape_md(item['author'])}**, {item['created']}\n\n"
            f"**Prompt:** {escape_md(item['prompt'])}{negative}\n\n**Seed:** {item['seed']}\n\n"
            f"```json\n{json.dumps(params, indent=1)}\n```")

