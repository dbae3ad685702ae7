"""Browser sessions against the live server: a password change signs the user's other browsers out, and a
Gradio session hash that another signed-in user reuses reaches neither the first user's session state nor
their results stream."""

from __future__ import annotations

import json
import uuid

import httpx

from tests.webapp.conftest import Live
from tests.webapp.helpers import queue_call, read_stream, signed_in_browser

NEW_PASSWORD = "violet-anchor-9371-quay"


def dependency(client: httpx.Client, api_name: str) -> dict:
    config = client.get("/config").raise_for_status().json()
    return next(d for d in config["dependencies"] if d["api_name"] == api_name)


def signed_in(client: httpx.Client) -> bool:
    return client.get("/gradio_api/login_check").status_code == 200


def outputs(messages: list[dict]) -> list:
    completed = messages[-1]
    assert completed["msg"] == "process_completed" and completed["success"], messages
    return completed["output"]["data"]


def test_a_password_change_in_the_ui_signs_out_the_users_other_browsers(live: Live) -> None:
    person, colleague = live.person(), live.person()
    changing = signed_in_browser(live.url, person.name, person.password)
    other = signed_in_browser(
        live.url, person.name.upper(), person.password
    )  # sign-in ignores the name's case
    colleagues = signed_in_browser(live.url, colleague.name, colleague.password)
    change = dependency(changing, "change_password")
    message = outputs(queue_call(changing, change, [person.password, NEW_PASSWORD, NEW_PASSWORD]))[-1]
    assert message.startswith("Password changed")
    assert not signed_in(other)
    assert signed_in(changing) and signed_in(colleagues)


def test_a_password_change_through_the_api_signs_out_every_browser(live: Live) -> None:
    person = live.person()
    browser = signed_in_browser(live.url, person.name, person.password)
    response = live.client(person).post(
        "/api/v1/me/password", json={"current_password": person.password, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 204, response.text
    assert not signed_in(browser)
    assert (
        live.client(person).get("/api/v1/me").status_code == 200
    )  # API tokens stay valid (docs/SECURITY.md)


def test_a_reused_session_hash_reaches_neither_state_nor_results(live: Live) -> None:
    first, second = live.person(), live.person()
    owner = signed_in_browser(live.url, first.name, first.password)
    intruder = signed_in_browser(live.url, second.name, second.password)
    session = uuid.uuid4().hex

    add = dependency(owner, "mix_add")  # counts ingredients in a gr.State of the session; shows that many

    def slots_shown(client: httpx.Client) -> int:
        return sum(1 for group in outputs(queue_call(client, add, [None], session))[1:] if group["visible"])

    assert slots_shown(owner) == 1
    assert slots_shown(intruder) == 1  # the intruder's own, fresh state
    assert slots_shown(owner) == 2

    whoami = dependency(owner, "whoami")
    stream = uuid.uuid4().hex
    joined = owner.post(
        "/gradio_api/queue/join",
        json={"data": [], "fn_index": whoami["id"], "session_hash": stream, "trigger_id": None},
    )
    assert joined.status_code == 200, joined.text
    stolen = read_stream(intruder, stream)
    owner_tag = first.name.split("-")[-1]
    assert owner_tag not in json.dumps(stolen), stolen
    own = read_stream(owner, stream, joined.json()["event_id"])
    assert owner_tag in json.dumps(own)  # the owner still gets the results the intruder asked for
