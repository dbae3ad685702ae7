"""Words the embedded model does not know come back as `warnings` from POST /generations and
GET /generations/{id} (prompt and mix texts alike), and are named under the prompt in the Generate tab,
whose "Candidates per image" shows 1 while a mix or a guidance image forces it."""

from __future__ import annotations

import gradio as gr
import pytest

from tests.webapp.conftest import TEST_STEPS, Live, embedded_model, wait_final
from tests.webapp.helpers import unique_word
from webapp.ui.common import ImageFiles
from webapp.ui.generate import GenerateTab

needs_embedded = pytest.mark.skipif(
    embedded_model() is None, reason="the tiny test model's BPE tokenizer knows every word"
)


@needs_embedded
def test_rest_responses_warn_of_each_unknown_word(live: Live) -> None:
    client = live.client(live.person())
    body = {
        "prompt": "a Teal circle on a white background",
        "steps": TEST_STEPS,
        "mix": [{"text": "glowing red", "weight": 0.5}],
    }
    accepted = client.post("/api/v1/generations", json=body)
    assert accepted.status_code == 202, accepted.text
    expected = [
        "prompt: not known to this model: Teal",
        "mix.0.text: not known to this model: glowing",
    ]
    assert accepted.json()["warnings"] == expected
    assert wait_final(client, accepted.json()["id"])["warnings"] == expected

    plain = client.post("/api/v1/generations", json={"prompt": "a red circle", "steps": TEST_STEPS})
    assert plain.json()["warnings"] == []
    assert wait_final(client, plain.json()["id"])["warnings"] == []


@needs_embedded
def test_unknown_words_are_named_under_the_prompt_as_typed(live: Live) -> None:
    person = live.person()
    with gr.Blocks():
        tab = GenerateTab(live.studio, ImageFiles(live.studio))
    request = gr.Request(username=person.name)
    word = unique_word()
    slots = [value for _ in tab.slots for value in ("text", "")]
    slots[1], slots[3] = "shiny blue", "sparkly"  # the second ingredient is not shown (mix_count 1)
    note = tab._unknown_note(request, f"a teal circle {word}", "a red circle", 1, *slots)
    assert [line for line in note.splitlines() if line] == [
        f"Not known to this model: teal, {word}",
        "Ingredient 1: not known to this model: shiny",
    ]
    slots[0] = "image"  # an image ingredient's hidden text does not count
    assert tab._unknown_note(request, "a red circle", "", 1, *slots) == ""


def test_candidates_show_1_while_a_mix_or_guidance_forces_it(live: Live) -> None:
    with gr.Blocks():
        tab = GenerateTab(live.studio, ImageFiles(live.studio))
    request = gr.Request(username=live.person().name)
    mixed = tab._candidates_forced(None, 0.0, 1, request)
    assert (mixed.value, mixed.interactive) == (1, False)
    guided = tab._candidates_forced("guide.png", 0.02, 0, request)
    assert (guided.value, guided.interactive) == (1, False)
    plain = tab._candidates_forced("guide.png", 0.0, 0, request)
    assert plain.interactive is True
