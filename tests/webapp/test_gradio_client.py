"""The UI's events through gradio_client, signed in: Generate works for a member, and handlers refuse
the wrong role on the server (the tabs' visibility is not what protects them)."""

from __future__ import annotations

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from storage.types import OPERATOR, HistoryQuery
from tests.webapp.conftest import TEST_STEPS, Live
from tests.webapp.helpers import unique_word


def signed_in(live: Live, role: str = "member") -> tuple[Client, object]:
    person = live.person(role)
    return Client(live.url, auth=(person.name, person.password), verbose=False, download_files=False), person


def call(client: Client, endpoint: str, **values: object) -> tuple:
    """Call an event by its parameter names; the others take their defaults (None where there is none)."""
    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"][endpoint][
        "parameters"
    ]
    args = {p["parameter_name"]: p["parameter_default"] for p in params}
    unknown = set(values) - set(args)
    assert not unknown, f"{endpoint} has no parameters {unknown}"
    return client.predict(*{**args, **values}.values(), api_name=endpoint)


def test_generate_event_with_auth(live: Live) -> None:
    client, person = signed_in(live)
    prompt = f"a blue square {unique_word()}"
    progress, gallery, recipe, download, _message = call(
        client, "/generate", prompt=prompt, seed=77, steps=TEST_STEPS
    )
    assert "Done: 1 image(s), seed 77" in progress and 'value="1.000"' in progress
    assert len(gallery) == 1 and gallery[0]["caption"].endswith("seed 77")
    assert recipe.startswith(prompt) and "Seed: 77" in recipe and f"Steps: {TEST_STEPS}" in recipe
    [item] = live.storage.history.search(person.user.id, HistoryQuery(mine=True)).items
    assert (item.prompt.text, item.generation.status.value, item.generation.seed) == (prompt, "succeeded", 77)
    assert len(item.generation.images) == 1
    assert download["value"]["orig_name"] == f"draftroom-{item.generation.images[0].id}.png"


def test_a_wrong_password_does_not_sign_in(live: Live) -> None:
    person = live.person()
    with pytest.raises(Exception, match=r"(?i)credentials|login|401"):
        Client(live.url, auth=(person.name, "not-the-password"), verbose=False)


@pytest.mark.parametrize(
    ("endpoint", "kwargs"),
    [
        ("/review_approve", {"comment": "looks fine"}),
        ("/review_queue", {}),
        ("/admin_add_user", {"name": "intruder", "role": "admin", "password": "password123"}),
        ("/admin_export", {"status": "approved"}),
    ],
)
def test_member_handlers_refuse_staff_actions(live: Live, endpoint: str, kwargs: dict) -> None:
    client, _ = signed_in(live)
    with pytest.raises(AppError, match="Only"):
        call(client, endpoint, **kwargs)
    assert all(user.username != "intruder" for user in live.storage.users.list_all(OPERATOR))


def test_a_disabled_account_is_refused_inside_an_open_session(live: Live) -> None:
    client, person = signed_in(live)
    live.storage.users.set_active(OPERATOR, person.user.id, False)
    with pytest.raises(AppError, match="disabled"):
        call(client, "/generate", prompt="a red circle", steps=TEST_STEPS)


def test_every_event_handler_checks_the_caller(live: Live) -> None:
    """Each Python handler of the UI starts from `guard` (webapp.ui.common): none trusts the tabs."""
    import inspect

    from webapp.ui import build_ui

    blocks = build_ui(live.studio)
    handlers = [block_fn.fn for block_fn in blocks.fns.values() if block_fn.fn is not None]
    assert len(handlers) > 30
    unguarded = [
        fn.__qualname__
        for fn in handlers
        if "guard(self.studio, request" not in inspect.getsource(fn)
        and "guard(studio, request" not in inspect.getsource(fn)
    ]
    assert unguarded == []
