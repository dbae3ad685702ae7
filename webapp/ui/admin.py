"""The Admin tab (admins): users and roles, API tokens, the audit log, and the export zip.

Secrets (a generated password, a new token) are shown once, in the result of the action that made
them; nothing else ever displays them again. Destructive actions (change a role, disable a user,
revoke a token) act on the row picked from its table, never on typed text, and run only after a
confirmation that names the target.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from model.hub import served_model_summary
from storage.errors import StorageError
from storage.types import ReviewStatus, Role, UserInfo
from webapp.context import Studio
from webapp.ui.common import (
    EXPORT_MAX_AGE_S,
    TempFolder,
    escape_md,
    export_zip,
    guard,
    plain_markdown,
    plain_table,
    ui_error,
    user_error,
    when,
)

MODEL_HEADERS = ["State", "Name", "Family", "Hash", "Device", "Dtype", "Size"]
USER_HEADERS = ["User", "Role", "Active", "Must change password", "Last login"]
TOKEN_HEADERS = ["Id", "Label", "Prefix", "Created", "Last used", "Revoked"]
AUDIT_HEADERS = ["When", "Who", "Action", "Target", "Detail"]
ROLES = [r.value for r in Role]


class AdminTab:
    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.exports = TempFolder("draftroom-export-", EXPORT_MAX_AGE_S)
        plain_markdown("### Model")
        self.models = plain_table(MODEL_HEADERS, elem_id="admin-models")
        plain_markdown("### Users")
        self.users = plain_table(USER_HEADERS, elem_id="admin-users")
        self.picked_note = plain_markdown(
            "Pick a user in the table to change their role or access.", elem_id="admin-picked-user"
        )
        with gr.Row():
            self.role = gr.Dropdown(ROLES, value="member", label="Role", elem_id="admin-role")
            self.set_role = gr.Button("Set role of the picked user", elem_id="admin-set-role")
            self.disable = gr.Button("Disable the picked user", variant="stop", elem_id="admin-disable")
            self.enable = gr.Button("Enable the picked user", elem_id="admin-enable")
            self.refresh = gr.Button("Refresh", elem_id="admin-refresh")
        with gr.Row():
            self.name = gr.Textbox(label="New username", elem_id="admin-username")
            self.password = gr.Textbox(
                label="Password (empty: generate one)", type="password", elem_id="admin-password"
            )
            self.add = gr.Button(
                "Add user (with the role above)", variant="primary", elem_id="admin-add-user"
            )
        self.user_message = plain_markdown("", elem_id="admin-user-message")
        with gr.Group(visible=False, elem_id="admin-confirm") as self.confirm_box:
            self.confirm_text = plain_markdown("", elem_id="admin-confirm-text")
            with gr.Row():
                self.confirm = gr.Button("Yes, do it", variant="stop", elem_id="admin-confirm-yes")
                self.cancel = gr.Button("Cancel", elem_id="admin-confirm-cancel")
        plain_markdown("### API tokens")
        with gr.Row():
            self.token_user = gr.Textbox(label="Token owner", elem_id="admin-token-user")
            self.token_label = gr.Textbox(label="Label", value="api", elem_id="admin-token-label")
            self.create_token = gr.Button("Create token", elem_id="admin-create-token")
            self.list_tokens = gr.Button("List tokens", elem_id="admin-list-tokens")
        self.token_secret = gr.Textbox(
            label="New token (shown once: copy it now)", interactive=False, elem_id="admin-token-secret"
        )
        self.tokens = plain_table(TOKEN_HEADERS, elem_id="admin-tokens")
        with gr.Row():
            self.picked_token_note = plain_markdown(
                "Pick a token in the table to revoke it.", elem_id="admin-picked-token"
            )
            self.revoke = gr.Button("Revoke the picked token", variant="stop", elem_id="admin-revoke-token")
        plain_markdown("### Export")
        with gr.Row():
            self.export_status = gr.Dropdown(
                [s.value for s in ReviewStatus],
                value="approved",
                label="Images with status",
                elem_id="admin-export-status",
            )
            self.export = gr.Button("Export zip", elem_id="admin-export")
        self.export_file = gr.File(label="Export", interactive=False, elem_id="admin-export-file")
        plain_markdown("### Audit log (latest)")
        self.audit = plain_table(AUDIT_HEADERS, wrap=True, elem_id="admin-audit")
        self.picked_user = gr.State(None)
        self.picked_token = gr.State(None)
        self.pending = gr.State(None)
        """The action waiting for confirmation: {"action", "target", and "role" or "token_id"}."""
        self._wire()

    def _wire(self) -> None:
        tables = [self.users, self.audit]
        self.refresh.click(self.refresh_tables, outputs=tables, api_name="admin_refresh")
        self.refresh.click(self.model_rows, outputs=[self.models], api_visibility="private")
        self.add.click(
            self._add,
            inputs=[self.name, self.role, self.password],
            outputs=[self.user_message, self.password, *tables],
            api_name="admin_add_user",
        )
        self.users.select(
            self._pick_user, outputs=[self.picked_user, self.picked_note], api_visibility="private"
        )
        self.tokens.select(
            self._pick_token, outputs=[self.picked_token, self.picked_token_note], api_visibility="private"
        )
        asking = [self.pending, self.confirm_box, self.confirm_text]
        self.set_role.click(
            self._ask_role, inputs=[self.picked_user, self.role], outputs=asking, api_name="admin_set_role"
        )
        self.disable.click(
            self._ask_disable, inputs=[self.picked_user], outputs=asking, api_name="admin_disable"
        )
        self.revoke.click(
            self._ask_revoke, inputs=[self.picked_token], outputs=asking, api_name="admin_revoke_token"
        )
        self.confirm.click(
            self._confirmed,
            inputs=[self.pending, self.token_user],
            outputs=[*asking, self.user_message, *tables, self.tokens],
            api_name="admin_confirm",
        )
        self.cancel.click(self._cancel, outputs=asking, api_name="admin_cancel")
        self.enable.click(
            self._enable,
            inputs=[self.picked_user],
            outputs=[self.user_message, *tables],
            api_name="admin_enable",
        )
        self.create_token.click(
            self._create_token,
            inputs=[self.token_user, self.token_label],
            outputs=[self.token_secret, self.tokens],
            api_name="admin_create_token",
        )
        self.list_tokens.click(
            self._list_tokens, inputs=[self.token_user], outputs=[self.tokens], api_name="admin_list_tokens"
        )
        self.export.click(
            self._export, inputs=[self.export_status], outputs=[self.export_file], api_name="admin_export"
        )

    def tables(self, admin_id: int) -> list[Any]:
        storage = self.studio.storage
        users = [
            [
                u.username,
                u.role.value,
                u.active,
                u.must_change_password,
                when(u.last_login_at) if u.last_login_at else "",
            ]
            for u in storage.users.list_all(admin_id)
        ]
        events = storage.audit.list_events(admin_id, page_size=30).items
        audit = [
            [
                when(e.created_at),
                e.actor_name,
                e.action,
                f"{e.target_type or ''} {e.target_id or ''}".strip(),
                ", ".join(f"{key}: {value}" for key, value in e.detail.items() if value is not None),
            ]
            for e in events
        ]
        return [users, audit]

    def model_rows(self, request: gr.Request) -> list[list[Any]]:
        """The model being served, then the models pulled into the data directory (`app.py models pull`)."""
        guard(self.studio, request, [Role.ADMIN])
        summary = served_model_summary(self.studio.engine.model_info, self.studio.storage.data_dir)
        served = summary["served"]
        rows = [
            [
                "serving",
                served["name"],
                served["family"],
                served["hash"],
                served["device"],
                served["dtype"],
                "",
            ]
        ]
        rows += [
            ["available", m["name"], m["family"], "", "", "", f"{m['size_bytes'] / 2**20:,.0f} MiB"]
            for m in summary["available"]
        ]
        return rows

    def refresh_tables(self, request: gr.Request) -> list[Any]:
        admin = guard(self.studio, request, [Role.ADMIN])
        return self.tables(admin.id)

    def _add(self, name: str, role: str, password: str, request: gr.Request) -> list[Any]:
        admin = guard(self.studio, request, [Role.ADMIN])
        try:
            created = self.studio.storage.users.create(
                admin.id, (name or "").strip(), role=role, password=password or None
            )
        except StorageError as exc:
            raise ui_error(exc) from None
        note = (
            f" One-time password: `{created.generated_password}` (shown once; they must change it)."
            if created.generated_password
            else ""
        )
        return [
            f"Added **{escape_md(created.user.username)}** as {created.user.role.value}.{note}",
            "",
            *self.tables(admin.id),
        ]

    # Picking a row, asking, confirming ----------------------------------------------------------

    def _pick_user(self, evt: gr.SelectData, request: gr.Request) -> list[Any]:
        guard(self.studio, request, [Role.ADMIN])
        name = _first_cell(evt)
        return [name, f"Picked user **{escape_md(name)}**."]

    def _pick_token(self, evt: gr.SelectData, request: gr.Request) -> list[Any]:
        guard(self.studio, request, [Role.ADMIN])
        token_id = int(_first_cell(evt))
        return [token_id, f"Picked token **#{token_id}**."]

    @staticmethod
    def _asking(pending: dict[str, Any], question: str) -> list[Any]:
        return [pending, gr.Group(visible=True), question]

    def _ask_role(self, name: str | None, role: str, request: gr.Request) -> list[Any]:
        admin = guard(self.studio, request, [Role.ADMIN])
        user = self._picked(admin.id, name)
        if role not in ROLES:
            raise user_error("Role: pick one of the list.")
        return self._asking(
            {"action": "role", "target": user.username, "role": role},
            f"Change the role of **{escape_md(user.username)}** from {user.role.value} to **{role}**?",
        )

    def _ask_disable(self, name: str | None, request: gr.Request) -> list[Any]:
        admin = guard(self.studio, request, [Role.ADMIN])
        user = self._picked(admin.id, name)
        return self._asking(
            {"action": "disable", "target": user.username},
            f"Disable **{escape_md(user.username)}**? They are signed out and their API tokens stop "
            "working until an admin enables them again.",
        )

    def _ask_revoke(self, token_id: int | None, request: gr.Request) -> list[Any]:
        guard(self.studio, request, [Role.ADMIN])
        if token_id is None:
            raise user_error("Pick a token in the table first.")
        return self._asking(
            {"action": "revoke", "target": f"token #{token_id}", "token_id": int(token_id)},
            f"Revoke **token #{int(token_id)}**? Programs using it stop working at once.",
        )

    def _cancel(self, request: gr.Request) -> list[Any]:
        guard(self.studio, request, [Role.ADMIN])
        return [None, gr.Group(visible=False), ""]

    def _confirmed(self, pending: dict[str, Any] | None, token_user: str, request: gr.Request) -> list[Any]:
        """Run the action the admin just confirmed, on exactly the target the question named."""
        admin = guard(self.studio, request, [Role.ADMIN])
        if not pending:
            raise user_error("Nothing is waiting for confirmation.")
        storage = self.studio.storage
        try:
            if pending["action"] == "revoke":
                revoked = storage.tokens.revoke(admin.id, int(pending["token_id"]))
                message = f"Revoked token #{revoked.id} of **{escape_md(revoked.username)}**."
                tokens = self.token_rows(admin.id, token_user or revoked.username)
            else:
                user = storage.users.find(pending["target"])
                if pending["action"] == "role":
                    user = storage.users.set_role(admin.id, user.id, pending["role"])
                    message = f"**{escape_md(user.username)}** is now {user.role.value}."
                else:
                    user = storage.users.set_active(admin.id, user.id, False)
                    message = f"**{escape_md(user.username)}** is disabled."
                tokens = gr.skip()
        except StorageError as exc:
            raise ui_error(exc) from None
        return [None, gr.Group(visible=False), "", message, *self.tables(admin.id), tokens]

    def _enable(self, name: str | None, request: gr.Request) -> list[Any]:
        admin = guard(self.studio, request, [Role.ADMIN])
        user = self._picked(admin.id, name)
        try:
            user = self.studio.storage.users.set_active(admin.id, user.id, True)
        except StorageError as exc:
            raise ui_error(exc) from None
        return [f"**{escape_md(user.username)}** is enabled.", *self.tables(admin.id)]

    def _picked(self, admin_id: int, name: str | None) -> UserInfo:
        if not name:
            raise user_error("Pick a user in the table first.")
        try:
            return self.studio.storage.users.find(name)
        except StorageError as exc:
            raise ui_error(exc) from None

    def token_rows(self, admin_id: int, name: str) -> list[list[Any]]:
        storage = self.studio.storage
        owner = storage.users.find((name or "").strip())
        return [
            [
                t.id,
                t.label,
                t.prefix,
                when(t.created_at),
                when(t.last_used_at) if t.last_used_at else "",
                when(t.revoked_at) if t.revoked_at else "",
            ]
            for t in storage.tokens.list_for(admin_id, owner.id)
        ]

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

    def _export(self, status: str, request: gr.Request) -> str:
        admin = guard(self.studio, request, [Role.ADMIN])
        return export_zip(self.studio, admin, status, self.exports)


def _first_cell(evt: gr.SelectData) -> str:
    """The first column of the row the admin clicked: the user's name or the token's id."""
    if not evt.row_value:
        raise user_error("Pick a row of the table.")
    return str(evt.row_value[0])
