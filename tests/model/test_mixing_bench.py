"""bench/mixing.py: its matched form subtracts a phrase of the prompt and adds that phrase edited to the target."""

from __future__ import annotations

from bench.mixing import CASES, table


def test_each_matched_swap_edits_a_phrase_of_its_prompt_into_its_target() -> None:
    for name, case in CASES.items():
        if case.matched is None:
            assert name == "single"
            continue
        removed, added = case.matched
        assert (removed.weight, added.weight) == (-1.0, 1.0)
        assert removed.text is not None and added.text is not None
        assert removed.text in case.prompt, name
        assert case.prompt.replace(removed.text, added.text) == case.target_prompt, name


def test_the_table_marks_cases_a_variant_does_not_run() -> None:
    rates = {"colour": 0.75, "shape": 0.5, "background": 1.0, "single": None}
    printed = table({"text, matched phrases": rates}, samples=4)
    assert printed.splitlines()[-1] == "| text, matched phrases | 75% | 50% | 100% | - |"
