"""The Account tab: change one's password. While a change is required it is the only usable tab,
and every other handler refuses on the server until it is done."""

from __future__ import annotations

import gradio as gr

from storage.errors import StorageError
from storage.services.users import MIN_PASSWORD
from webapp.context import Studio
from webapp.ui.common import guard, plain_markdown, ui_error, user_error


class AccountTab:
    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.notice = plain_markdown("", elem_id="account-notice")
        self.current = gr.Textbox(label="Current password", type="password", elem_id="current-password")
        self.new = gr.Textbox(
            label=f"New password ({MIN_PASSWORD} characters or more, not a common one)",
            type="password",
            elem_id="new-password",
        )
        self.confirm = gr.Textbox(label="New password again", type="password", elem_id="confirm-password")
        self.change = gr.Button("Change password", variant="primary", elem_id="change-password-btn")
        self.message = plain_markdown("", elem_id="account-message")

    def change_password(self, current: str, new: str, confirm: str, request: gr.Request) -> list[str]:
        user = guard(self.studio, request, allow_password_change=True)
        if not self.studio.auth.enabled:
            raise user_error("Sign-in is off (--no-auth): there is no password to change here.")
        if new != confirm:
            raise user_error("New password: the two entries differ.")
        try:
            self.studio.storage.users.change_password(
                user.id, user.id, new or "", current_password=current or ""
            )
        except StorageError as exc:
            raise ui_error(exc) from None
        self.studio.auth.password_changed(user.username, keeping=request.cookies)
        return ["", "", "", "Password changed. Reload the page to use the studio."]
