"""The studio's Gradio Blocks: Generate, Review, History, Admin and Account tabs.

Tabs are shown by role when the page loads, for comfort only: each handler checks the caller again
on the server (webapp.ui.common.guard).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from storage.types import Role
from webapp.auth import STAFF
from webapp.context import Studio
from webapp.ui.account import AccountTab
from webapp.ui.admin import AdminTab
from webapp.ui.assets import CSS, SHORTCUTS_JS
from webapp.ui.common import (
    SWEEP_EVERY_S,
    TEMP_MAX_AGE_S,
    ImageFiles,
    escape_md,
    guard,
    keep_outputs_on_error,
    plain_markdown,
)
from webapp.ui.generate import GenerateTab
from webapp.ui.history import HistoryTab
from webapp.ui.inbox import LABEL as INBOX_LABEL
from webapp.ui.inbox import InboxTab
from webapp.ui.review import ReviewTab

SIGN_OUT_FORM = (
    '<form method="post" action="/logout">'
    '<button type="submit" id="sign-out-btn" class="lg secondary">Sign out</button></form>'
)

__all__ = ["CSS", "build_ui"]


def build_ui(studio: Studio) -> gr.Blocks:
    files = ImageFiles(studio)
    with gr.Blocks(
        title="Draftroom", analytics_enabled=False, delete_cache=(SWEEP_EVERY_S, TEMP_MAX_AGE_S)
    ) as demo:
        with gr.Row():
            plain_markdown("## Draftroom", elem_id="title")
            whoami = plain_markdown("", elem_id="whoami")
            # A form, so signing out is a same-origin POST that lands on the sign-in page in this tab.
            if studio.auth.enabled:
                gr.HTML(SIGN_OUT_FORM, elem_id="sign-out", min_height=0, container=False)
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("Generate", id="generate", elem_id="tab-generate") as generate_tab:
                generate = GenerateTab(studio, files)
            with gr.Tab("Review", id="review", elem_id="tab-review", visible=False) as review_tab:
                review = ReviewTab(studio, files)
            with gr.Tab("History", id="history", elem_id="tab-history") as history_tab:
                history = HistoryTab(studio, files, generate, tabs)
            with gr.Tab(INBOX_LABEL, id="inbox", elem_id="inbox") as inbox_tab:
                inbox = InboxTab(studio, files, generate, tabs, inbox_tab)
            with gr.Tab("Admin", id="admin", elem_id="tab-admin", visible=False) as admin_tab:
                admin = AdminTab(studio)
            with gr.Tab("Account", id="account", elem_id="tab-account"):
                account = AccountTab(studio)

        def on_load(request: gr.Request) -> list[Any]:
            """Who is signed in, and which tabs they may use (a pending password change allows only Account)."""
            user = guard(studio, request, allow_password_change=True)
            blocked = studio.auth.enabled and user.must_change_password
            return [
                f"Signed in as **{escape_md(user.username)}** ({user.role.value})"
                + ("" if studio.auth.enabled else " (sign-in is off)"),
                gr.Tabs(selected="account" if blocked else "generate"),
                gr.Tab(visible=not blocked, interactive=not blocked),
                gr.Tab(visible=not blocked and user.role in STAFF),
                gr.Tab(visible=not blocked, interactive=not blocked),
                gr.Tab(visible=not blocked and user.role == Role.ADMIN),
                "**Change your password before using the studio.**" if blocked else "",
            ]

        shell = [whoami, tabs, generate_tab, review_tab, history_tab, admin_tab, account.notice]
        demo.load(on_load, outputs=shell, api_name="whoami")
        demo.load(None, js=SHORTCUTS_JS)
        demo.load(inbox.on_page_load, outputs=inbox.shown, api_visibility="private")
        inbox_tab.select(inbox.load, outputs=inbox.shown, api_visibility="private")
        account.change.click(
            account.change_password,
            inputs=[account.current, account.new, account.confirm],
            outputs=[account.current, account.new, account.confirm, account.message],
            api_name="change_password",
        ).success(on_load, outputs=shell, api_visibility="private")
        review_tab.select(review.load, inputs=review.filters, outputs=review.shown, api_visibility="private")
        history_tab.select(
            history.first_page,
            inputs=history.filters,
            outputs=[history.results, history.ids, history.page, history.page_label],
            api_visibility="private",
        )
        admin_tab.select(admin.refresh_tables, outputs=[admin.users, admin.audit], api_visibility="private")
        admin_tab.select(admin.model_rows, outputs=[admin.models], api_visibility="private")
    keep_outputs_on_error(demo)
    return demo
