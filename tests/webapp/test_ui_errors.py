"""Errors in the UI are toasts naming the field, never a blanked form, table or audit log; an expected user
error (a refusal by storage, the engine or a check) is logged as one line, not as a traceback."""

from __future__ import annotations

import logging

import gradio as gr
import pytest

from model.engine.engine_common import QueueFull
from storage.errors import NotFound, PermissionDenied, ValidationFailed
from tests.webapp.conftest import Live
from webapp.errors import ApiError
from webapp.ui import build_ui
from webapp.ui.common import ImageFiles, ui_error
from webapp.ui.generate import GenerateTab


@pytest.mark.parametrize(
    "error",
    [
        NotFound("Image 7 does not exist."),
        PermissionDenied("Only admins may do that."),
        ValidationFailed("comment", "comment: needed to reject"),
        QueueFull("max_queue", "The queue is full; try again in a moment."),
        ApiError(422, "invalid_request", "Guidance image: not an image"),
    ],
)
def test_expected_errors_are_one_log_line_and_no_traceback(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="webapp.ui.common"):
        shown = ui_error(error)
    assert shown.print_exception is False
    assert shown.message in str(error)
    assert [(r.levelno, r.exc_info) for r in caplog.records] == [(logging.INFO, None)]
    assert shown.message in caplog.records[0].getMessage()


def test_an_unexpected_error_keeps_its_traceback_in_the_log_but_not_in_the_toast(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="webapp.ui.common"):
        shown = ui_error(RuntimeError("secret internals"))
    assert "secret internals" not in shown.message
    assert caplog.records[0].exc_info is not None


def test_a_handlers_refusal_names_the_field_without_a_traceback(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    with gr.Blocks():
        tab = GenerateTab(live.studio, ImageFiles(live.studio))
    person = live.person()
    values = [component.value for component in tab.generate_inputs]
    values[tab.generate_inputs.index(tab.prompt)] = "x" * 5000
    with caplog.at_level(logging.INFO, logger="webapp.ui.common"), pytest.raises(gr.Error) as refused:
        list(tab._generate(gr.Request(username=person.name), *values))
    assert refused.value.message.startswith("Prompt: ")
    assert refused.value.print_exception is False
    assert [r.exc_info for r in caplog.records] == [None]


def test_no_event_covers_its_outputs_with_an_error_box(live: Live) -> None:
    demo = build_ui(live.studio)
    assert {fn.show_progress for fn in demo.fns.values()} <= {"hidden", "minimal"}
