"""The Admin tab (admins): users and roles, API tokens, the audit log, and the export zip.

Secrets (a generated password, a new token) are shown once, in the result of the action that made
them; nothing else ever displays them again.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from storage.errors import StorageError
from storage.types import ReviewStatus, Role
from webapp.context import Studio
from webapp.ui.common import export_zip, guard, ui_error, when

USER_HEADERS = ["User", "Role", "Active", "Must change password", "Last login"]
TOKEN_HEADERS = ["Id", "Label", "Prefix", "Created", "Last used", "Revoked"]
AUDIT_HEADERS = ["When", "Who", "Action", "Target"]
ROLES = [r.value for r in Role]


class AdminTab:
    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.export_dir = Path(tempfile.mkdtemp(prefix="draftroom-export-"))
        gr.Markdown("### Users")
        self.users = gr.Dataframe(headers=USER_HEADERS, value=[], interactive=False, elem_id="admin-users")
        with gr.Row():
            self.name = gr.Textbox(label="Username", elem_id="admin-username")
            self.role = gr.Dropdown(ROLES, value="member", label="Role", elem_id="admin-role")
            self.password = gr.Textbox(label="Password (empty: generate one)", type="password",
                                       elem_id="admin-password")
        with gr.Row():
            self.add = gr.Button("Add user", variant="primary", elem_id="admin-add-user")
            self.set_role = gr.Button("Set role", elem_id="admin-set-role")
            self.disable = gr.Button("Disable", variant="stop", elem_id="admin-disable")
            self.enable = gr.Button("Enable", elem_id="admin-enable")
            self.refresh = gr.Button("Refresh", elem_id="admin-refresh")
        self.user_message = gr.Markdown("", elem_id="admin-user-message")
        gr.Markdown("### API tokens")
        with gr.Row():
            self.token_user = gr.Textbox(label="Token owner", elem_id="admin-token-user")
            self.token_label = gr.Textbox(label="Label", value="api", elem_id="admin-token-label")
            self.create_token = gr.Button("Create token", elem_id="admin-create-token")
            self.list_tokens = gr.Button("List tokens", elem_id="admin-list-tokens")
        self.token_secret = gr.Textbox(label="New token (shown once: copy it now)", interactive=False,
                                       elem_id="admin-token-secret")
        self.tokens = gr.Dataframe(headers=TOKEN_HEADERS, value=[], interactive=False, elem_id="admin-tokens")
        with gr.Row():
            self.token_id = gr.Number(label="Token id", value=None, precision=0, elem_id="admin-token-id")
            self.revoke = gr.Button("Revoke", variant="stop", elem_id="admin-revoke-token")
        gr.Markdown("### Export")
        with gr.Row():
            self.export_status = gr.Dropdown([s.value for s in ReviewStatus], value="approved",
                                             label="Images with status", elem_id="admin-export-status")
            self.export = gr.Button("Export zip", elem_id="admin-export")
        self.export_file = gr.File(label="Export", interactive=False, elem_id="admin-export-file")
        gr.Markdown("### Audit log (latest)")
        self.audit = gr.Dataframe(headers=AUDIT_HEADERS, value=[], interactive=False, elem_id="admin-audit")
        self._wire()

    def _wire(self) -> None:
        tables = [self.users, self.audit]
        self.refresh.click(self.refresh_tables, outputs=tables, api_name="admin_refresh")
        self.add.click(self._add, inputs=[self.name, self.role, self.password],
                       outputs=[self.user_message, self.password, *tables], api_name="admin_add_user")
        self.set_role.click(self._set_role, inputs=[self.name, self.role], outputs=[self.user_message, *tables],
                            api_name="admin_set_role")
        self.disable.click(self._activator(False), inputs=[self.name], outputs=[self.user_message, *tables],
                           api_name="admin_disable")
        self.enable.click(self._activator(True), inputs=[self.name], outputs=[self.user_message, *tables],
                          api_name="admin_enable")
        self.create_token.click(self._create_token, inputs=[self.token_user, self.token_label],
                                outputs=[self.token_secret, self.tokens], api_name="admin_create_token")
        self.list_tokens.click(self._list_tokens, inputs=[self.token_user], outputs=[self.tokens],
                               api_name="admin_list_tokens")
        self.revoke.click(self._revoke, inputs=[self.token_id, self.token_user], outputs=[self.tokens],
                          api_name="admin_revoke_token")
        self.export.click(self._export, inputs=[self.export_status], outputs=[self.export_file],
                          api_name="admin_export")

    def tables(self, admin_id: int) -> list[Any]:
        storage = self.studio.storage
        users = [[u.username, u.role.value, u.active, u.must_change_password,
                  when(u.last_login_at) if u.last_login_at else ""] for u in storage.users.list_all(admin_id)]
        events = storage.audit.list_events(admin_id, page_size=30).items
        audit = [[when(e.created_at), e.actor_name, e.action, f"{e.target_type or ''} {e.target_id or ''}".strip()]
                 for e in events]
        return [users, audit]

    def refresh_tables(self, request: gr.Request) -> list[Any]:
        admin = guard(self.studio, request, [Role.ADMIN])
        return self.tables(admin.id)

    def _add(self, name: str, role: str, password: str, request: gr.Request) -> list[Any]:
        admin = guard(self.studio, request, [Role.ADMIN])
        try:
            created = self.studio.storage.users.create(admin.id, (name or "").strip(), role=role,
                                                       password=password or None)
        except StorageError as exc:
            raise ui_error(exc) from None
        note = (f" One-time password: `{created.generated_password}` (shown once; they must change it)."
                if created.generated_password else "")
        return [f"Added **{created.user.username}** as {created.user.role.value}.{note}", "",
                *self.tables(admin.id)]

    def _set_role(self, name: str, role: str, request: gr.Request) -> list[Any]:
        admin = guard(self.studio, request, [Role.ADMIN])
        users = self.studio.storage.users
        try:
            user = users.set_role(admin.id, users.find((name or "").strip()).id, role)
        except StorageError as exc:
            raise ui_error(exc) from None
        return [f"**{user.username}** is now {user.role.value}.", *self.tables(admin.id)]

    def _activator(self, active: bool) -> Callable[..., list[Any]]:
        def set_active(name: str, request: gr.Request) -> list[Any]:
            admin = guard(self.studio, request, [Role.ADMIN])
            users = self.studio.storage.users
            try:
                user = users.set_active(admin.id, users.find((name or "").strip()).id, active)
            except StorageError as exc:
                raise ui_error(exc) from None
            return [f"**{user.username}** is {'enabled' if user.active else 'disabled'}.", *self.tables(admin.id)]
        return set_active

    def token_rows(self, admin_id: int, name: str) -> list[list[Any]]:
        storage = self.studio.storage
        owner = storage.users.find((name or "").strip())
        return [[t.id, t.label, t.prefix, when(t.created_at), when(t.last_used_at) if t.last_used_at else "",
                 when(t.revoked_at) if t.revoked_at else ""] for t in storage.tokens.list_for(admin_id, owner.id)]

    def _create_token(self, name: str, label: str, request: gr.Request) -> list[Any]:
        admin = guard(self.studio, request, [Role.ADMIN])
        storage = self.studio.storage
        try:
            new = storage.tokens.create(admin.id, storage.users.find((name or "").strip()).id, label or "")
            return [new.secret, self.token_rows(admin.id, name)]
        except StorageError as exc:
            raise ui_error(exc) from None

    def _list_tokens(self, name: str, request: gr.Request) -> list[list[Any]]:
        admin = guard(self.studio, request, [Role.ADMIN])
        try:
            return self.token_rows(admin.id, name)
        except StorageError as exc:
            raise ui_error(exc) from None

    def _revoke(self, token_id: float | None, name: str, request: gr.Request) -> list[list[Any]]:
        admin = guard(self.studio, request, [Role.ADMIN])
        if token_id is None:
            raise gr.Error("Token id: give the id from the table.")
        try:
            revoked = self.studio.storage.tokens.revoke(admin.id, int(token_id))
            return self.token_rows(admin.id, name or revoked.username)
        except StorageError as exc:
            raise ui_error(exc) from None

    def _export(self, status: str, request: gr.Request) -> str:
        admin = guard(self.studio, request, [Role.ADMIN])
        return export_zip(self.studio, admin, status, self.export_dir)
