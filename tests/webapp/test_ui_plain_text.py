"""What users typed is shown as typed in the UI: no Markdown, HTML or LaTeX from a prompt, comment or name.

Every Markdown and table component of the built UI is checked from its config, so a new one is covered
without editing this test."""

from __future__ import annotations

from tests.webapp.conftest import Live
from webapp.ui.common import escape_md


def test_every_markdown_and_table_has_latex_off_and_tables_are_plain_text(live: Live) -> None:
    from webapp.ui import build_ui

    components = build_ui(live.studio).get_config_file()["components"]  # type: ignore[arg-type]
    markdowns = [c["props"] for c in components if c["type"] == "markdown"]
    tables = [c["props"] for c in components if c["type"] == "dataframe"]
    assert len(markdowns) >= 10 and len(tables) >= 4
    assert all(props["latex_delimiters"] == [] for props in markdowns + tables)
    assert all(props["datatype"] == "str" for props in tables)


def test_typed_markup_and_math_are_escaped_for_markdown() -> None:
    typed = "$$\\href{http://evil.example}{click}$$ [link](http://x) <b>bold</b> **strong**"
    escaped = escape_md(typed)
    for markup in ("$$", "[link]", "](", "<b>", "**"):
        assert markup not in escaped
    assert "\\$\\$\\\\href" in escaped and "\\[link\\]\\(" in escaped
    assert escaped.replace("\\", "") == typed.replace("\\", "")
