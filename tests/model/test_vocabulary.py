"""Words a model does not know: the embedded model's word-level tokenizer names them, as typed and each once;
a CLIP (BPE) tokenizer spells every word, so it names none. The model card lists the whole vocabulary."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from model.families.base import WordVocabulary
from tests.model.tiny_models import tiny_tokenizer

EMBEDDED = Path(__file__).resolve().parents[2] / "model" / "weights" / "embedded"
needs_embedded = pytest.mark.skipif(
    not (EMBEDDED / "prior" / "tokenizer").is_dir(), reason="the embedded model is not installed"
)


@pytest.fixture(scope="module")
def vocabulary() -> WordVocabulary:
    return WordVocabulary(AutoTokenizer.from_pretrained(EMBEDDED / "prior" / "tokenizer"))


@needs_embedded
def test_unknown_words_are_named_as_typed_and_once(vocabulary: WordVocabulary) -> None:
    assert vocabulary.unknown_words("a Teal circle, on a blue-ish teal background") == ["Teal", "ish"]
    assert vocabulary.unknown_words("A RED circle on a white background") == []
    assert vocabulary.unknown_words("") == []


@needs_embedded
def test_a_prompt_longer_than_the_encoder_reads_is_still_checked_to_its_end(
    vocabulary: WordVocabulary,
) -> None:
    assert vocabulary.unknown_words("a red circle " * 20 + "teal") == ["teal"]


def test_a_bpe_tokenizer_knows_every_word() -> None:
    assert not WordVocabulary.applies_to(tiny_tokenizer())


@needs_embedded
def test_the_model_card_lists_the_tokenizers_vocabulary(vocabulary: WordVocabulary) -> None:
    card = (EMBEDDED / "MODEL_CARD.md").read_text()
    section = card.split("## Vocabulary", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"`([^`]+)`", section.split("\n\n", 2)[2])
    assert listed == vocabulary.words
    assert f"these {len(vocabulary.words)} words" in section
