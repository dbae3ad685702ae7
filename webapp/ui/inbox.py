"""The Inbox tab (everyone): decisions reviewers made on one's own images, newest first, with their
comments; the tab's label counts them. "Revise" on a decision opens the image's recipe in Generate,
and the next image submitted from there is recorded as a revision of it (the reviewer sees the lineage).
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from storage.errors import StorageError
from storage.types import Decision, InboxItem, UserInfo
from webapp.context import Studio
from webapp.ui.common import ImageFiles, guard, plain_markdown, thumbnail_img, ui_error, user_error, when
from webapp.ui.generate import GenerateTab
from webapp.ui.history import CARD_CLICKS_JS

INBOX_SIZE = 50
LABEL = "Inbox"


def inbox_label(total: int) -> str:
    return f"{LABEL} ({total})" if total else LABEL


class InboxTab:
    def __init__(
        self, studio: Studio, files: ImageFiles, generate: GenerateTab, tabs: gr.Tabs, tab: gr.Tab
    ) -> None:
        self.studio = studio
        self.files = files
        self.generate = generate
        self.tabs = tabs
        self.tab = tab
        plain_markdown(
            "Decisions on your images. **Revise** opens the image's recipe in Generate; the next "
            "image you submit there is recorded as a revision of it."
        )
        self.refresh = gr.Button("Refresh", size="sm", elem_id="inbox-refresh")
        self.list = gr.HTML("", elem_id="inbox-list", js_on_load=CARD_CLICKS_JS)
        self.image_ids = gr.State([])
        self.refresh.click(self.load, outputs=self.shown, api_name="inbox")
        self.list.click(
            self._revise,
            inputs=[self.image_ids],
            outputs=[*generate.form, generate.revising, generate.revising_note, tabs],
            api_name="inbox_revise",
        )

    @property
    def shown(self) -> list[Any]:
        return [self.tab, self.list, self.image_ids]

    def entry(self, index: int, item: InboxItem) -> str:
        review, image = item.review, item.image
        path = None if image.file_missing else self.studio.storage.images.path_for(image.sha256)
        comment = f"<blockquote>{html.escape(review.comment)}</blockquote>" if review.comment else ""
        revise = (
            f'<button type="button" class="inbox-revise" data-index="{index}">Revise</button>'
            if review.decision == Decision.REQUEST_CHANGES
            else ""
        )
        prompt = html.escape(item.prompt_text) if item.prompt_text.strip() else "<i>(mix only)</i>"
        return (
            f'<li class="inbox-item">{thumbnail_img(path, f"image #{image.id}")}<div>'
            f"<b>{html.escape(review.decision.value.replace('_', ' '))}</b>: image #{image.id} by "
            f"{html.escape(review.reviewer)}, {when(review.created_at)} \u00b7 now "
            f"{html.escape(image.review_status.value)}<br>{prompt}{comment}{revise}</div></li>"
        )

    def contents(self, user: UserInfo) -> list[Any]:
        page = self.studio.storage.reviews.inbox(user.id, page_size=INBOX_SIZE)
        listing = (
            "<p>No decisions on your images yet.</p>"
            if not page.items
            else f'<ul class="inbox">{"".join(self.entry(n, item) for n, item in enumerate(page.items))}</ul>'
        )
        return [
            gr.Tab(label=inbox_label(page.total), visible=True),
            listing,
            [item.image.id for item in page.items],
        ]

    def load(self, request: gr.Request) -> list[Any]:
        user = guard(self.studio, request)
        try:
            return self.contents(user)
        except StorageError as exc:
            raise ui_error(exc) from None

    def on_page_load(self, request: gr.Request) -> list[Any]:
        """The count on the tab as the page opens; hidden while a password change is pending."""
        user = guard(self.studio, request, allow_password_change=True)
        if self.studio.auth.enabled and user.must_change_password:
            return [gr.Tab(visible=False), "", []]
        return self.load(request)

    def _revise(self, image_ids: list[int], evt: gr.EventData, request: gr.Request) -> dict[Any, Any]:
        """The decided image's recipe in Generate, remembered as the image the next submit revises."""
        user = guard(self.studio, request)
        index = getattr(evt, "index", None)
        if not image_ids or not isinstance(index, int) or not 0 <= index < len(image_ids):
            raise user_error("Choose Revise on one of the decisions.")
        image_id = image_ids[index]
        try:
            image = self.studio.storage.generations.image(user.id, image_id)
            values = self.generate.recipe_values(user, image.generation_id, remix=False)
        except StorageError as exc:
            raise ui_error(exc) from None
        values.update(self.generate.revising_values(image_id))
        values[self.tabs] = gr.Tabs(selected="generate")
        return values
