"""Studio UI handlers called directly: destructive admin actions act on the picked row only after a
confirmation naming the target, the audit table says which decision was made on which image, a
reviewer exports approved images, user text in HTML panels stays text, and element ids are unique."""

from __future__ import annotations

import zipfile

import gradio as gr
import pytest

from storage.types import OPERATOR, HistoryQuery, Role
from tests.webapp.conftest import Live
from tests.webapp.helpers import generate, unique_word
from webapp.ui.admin import AdminTab
from webapp.ui.common import ImageFiles, escape_md
from webapp.ui.review import ReviewTab


@pytest.fixture
def admin_tab(live: Live) -> AdminTab:
    with gr.Blocks():
        return AdminTab(live.studio)


def test_disabling_a_user_names_them_and_waits_for_confirmation(live: Live, admin_tab: AdminTab) -> None:
    request = gr.Request(username=live.person("admin").name)
    victim = live.person()
    with pytest.raises(gr.Error, match="Pick a user"):
        admin_tab._ask_disable(None, request)
    pending, box, question = admin_tab._ask_disable(victim.name, request)
    assert escape_md(victim.name) in question and box.visible is True
    assert live.storage.users.find(victim.name).active  # asking changed nothing
    assert admin_tab._cancel(request)[0] is None
    assert live.storage.users.find(victim.name).active
    cleared, hidden, _, message, *_ = admin_tab._confirmed(pending, "", request)
    assert (cleared, hidden.visible) == (None, False) and "disabled" in message
    assert not live.storage.users.find(victim.name).active
    with pytest.raises(gr.Error, match="Nothing is waiting"):
        admin_tab._confirmed(None, "", request)


def test_role_changes_and_token_revocation_are_confirmed_first(live: Live, admin_tab: AdminTab) -> None:
    request = gr.Request(username=live.person("admin").name)
    target = live.person()
    pending, _, question = admin_tab._ask_role(target.name, "reviewer", request)
    assert escape_md(target.name) in question and "member" in question and "reviewer" in question
    assert live.storage.users.find(target.name).role == Role.MEMBER
    admin_tab._confirmed(pending, "", request)
    assert live.storage.users.find(target.name).role == Role.REVIEWER

    [token] = live.storage.tokens.list_for(OPERATOR, target.user.id)
    pending, _, question = admin_tab._ask_revoke(token.id, request)
    assert f"#{token.id}" in question
    assert live.storage.tokens.list_for(OPERATOR, target.user.id)[0].revoked_at is None
    admin_tab._confirmed(pending, target.name, request)
    assert live.storage.tokens.list_for(OPERATOR, target.user.id)[0].revoked_at is not None


def test_the_audit_table_names_the_decision_and_the_image(live: Live, admin_tab: AdminTab) -> None:
    author, reviewer, admin = live.person(), live.person("reviewer"), live.person("admin")
    image_id = generate(live.client(author), f"a red circle {unique_word()}")["images"][0]["id"]
    live.storage.reviews.submit(author.user.id, image_id)
    live.storage.reviews.decide(reviewer.user.id, image_id, "reject", "too dark")
    _, audit = admin_tab.tables(admin.user.id)
    assert [reviewer.name, "review.decide", f"image {image_id}", "decision: reject"] in [
        row[1:] for row in audit
    ]


def test_a_reviewer_exports_the_approved_images(live: Live) -> None:
    author, reviewer = live.person(), live.person("reviewer")
    image_id = generate(live.client(author), f"a red circle {unique_word()}")["images"][0]["id"]
    live.storage.reviews.submit(author.user.id, image_id)
    live.storage.reviews.decide(reviewer.user.id, image_id, "approve")
    with gr.Blocks():
        tab = ReviewTab(live.studio, ImageFiles(live.studio))
    path = tab._export(gr.Request(username=reviewer.name))
    with zipfile.ZipFile(path) as archive:
        assert "manifest.json" in archive.namelist()
        assert any(name.startswith("images/") for name in archive.namelist())
    with pytest.raises(gr.Error, match="Only"):
        tab._export(gr.Request(username=author.name))


def test_every_element_id_is_unique(live: Live) -> None:
    from webapp.ui import build_ui

    blocks = build_ui(live.studio)
    ids = [block.elem_id for block in blocks.blocks.values() if getattr(block, "elem_id", None)]
    assert len(ids) > 50
    assert sorted(i for i in set(ids) if ids.count(i) > 1) == []
    assert {
        "prompt",
        "generate",
        "review-image",
        "review-recipe",
        "review-comment",
        "review-approve",
        "review-reject",
        "review-changes",
        "history-search",
        "history-results",
        "inbox",
    } <= set(ids)


def test_hostile_prompts_stay_text_in_the_review_panel_and_history_cards(live: Live) -> None:
    from webapp.ui.history import cards

    author, reviewer = live.person(), live.person("reviewer")
    hostile = f'<img src=x onerror="alert(1)"> {unique_word()}'
    client = live.client(author)
    done = generate(
        client,
        hostile,
        negative_prompt="<script>alert(2)</script>",
        mix=[{"text": "<b>bold</b>", "weight": 1.0}],
    )
    image_id = done["images"][0]["id"]
    with gr.Blocks():
        files = ImageFiles(live.studio)
        tab = ReviewTab(live.studio, files)
    _, recipe, context = tab.panel(live.storage.users.find(reviewer.name), image_id)
    for html in (recipe, context):
        assert "<script>" not in html and "<img src=x" not in html and "<b>bold</b>" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in recipe and "&lt;script&gt;" in recipe
    assert "Texts mixed in text space." in recipe, "the review names the space a mix used"
    page = live.storage.history.search(author.user.id, HistoryQuery(mine=True))
    listing = cards(page.items, files)
    assert "<img src=x" not in listing and "&lt;img src=x" in listing


def test_the_admin_sees_the_served_model_and_the_pulled_ones(live: Live, admin_tab: AdminTab) -> None:
    info = live.studio.engine.model_info
    pulled = live.storage.data_dir / "models" / "pulled-copy"
    pulled.parent.mkdir(exist_ok=True)
    pulled.symlink_to(info.path, target_is_directory=True)
    try:
        rows = admin_tab.model_rows(gr.Request(username=live.person("admin").name))
    finally:
        pulled.unlink()
    assert rows[0][:6] == ["serving", info.name, info.family, info.hash, info.device, info.dtype]
    assert ["available", "pulled-copy", info.family] == rows[-1][:3] and rows[-1][-1].endswith("MiB")
    with pytest.raises(gr.Error):
        admin_tab.model_rows(gr.Request(username=live.person("member").name))
