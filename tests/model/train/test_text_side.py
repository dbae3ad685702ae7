"""The text side's widened vocabulary: a laid-out tokenizer keeps its ids and learns the lexicon, new word rows
start as the words they mean, and word dropout only ever writes <unk> inside a caption's frame."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from model.train import networks
from model.train.clip import grow_vocabulary, tokenize, word_dropout
from model.train.common import MAX_TEXT_TOKENS, PRESETS
from model.train.tokenizer import SPECIAL_TOKENS, load_tokenizer, train_tokenizer
from model.world.captions import OPENINGS, SYNONYM_OF

OLD_WORDS = ["a", "red", "circle", "on", "white", "background", "zebra"]


def _old_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    """A word-level tokenizer as an earlier model shipped it: a few words, one the world never uses."""
    model = Tokenizer(models.WordLevel({w: i for i, w in enumerate(SPECIAL_TOKENS + OLD_WORDS)}, "<unk>"))
    model.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    model.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=model,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=MAX_TEXT_TOKENS,
    )
    tokenizer.save_pretrained(folder)
    return tokenizer


def test_a_laid_out_tokenizer_keeps_its_ids_and_learns_the_lexicon(tmp_path: Path) -> None:
    old = _old_tokenizer(tmp_path / "tokenizer").get_vocab()
    grown = train_tokenizer(tmp_path / "tokenizer", captions=500)
    vocabulary = grown.get_vocab()
    assert {w: vocabulary[w] for w in old} == old
    assert set(SYNONYM_OF) <= set(vocabulary)  # the unseen synonyms too, from the lexicon alone
    assert not {w for opening in OPENINGS["unseen"] for w in opening.split()} & set(vocabulary)
    ids = grown("A Crimson DISK on a snowy canvas").input_ids
    assert grown.unk_token_id not in ids and ids[0] == grown.bos_token_id and ids[-1] == grown.eos_token_id
    assert load_tokenizer(tmp_path / "tokenizer").get_vocab() == vocabulary


def test_new_word_rows_start_as_the_words_they_mean(tmp_path: Path) -> None:
    old = _old_tokenizer(tmp_path / "tokenizer")
    encoder = networks.text_encoder(PRESETS["tiny"], old)
    before = encoder.get_input_embeddings().weight.detach().clone()
    grown = train_tokenizer(tmp_path / "tokenizer", captions=500)
    added = grow_vocabulary(encoder, grown)
    rows, vocabulary = encoder.get_input_embeddings().weight, grown.get_vocab()
    assert encoder.config.vocab_size == len(grown) and added == list(range(len(old), len(grown)))
    assert torch.equal(rows[: len(old)], before)
    for synonym in ("crimson", "ruby", "disk", "snowy", "backdrop", "canvas"):
        assert torch.equal(rows[vocabulary[synonym]], before[vocabulary[SYNONYM_OF[synonym]]]), synonym
    assert torch.allclose(rows[vocabulary["please"]], before.mean(dim=0))
    assert grow_vocabulary(encoder, grown) == []  # nothing new the second time


def test_word_dropout_only_writes_unknowns_inside_the_frame(tmp_path: Path) -> None:
    tokenizer = train_tokenizer(tmp_path / "tokenizer", captions=500)
    captions = ["a red circle on a white background", ""] * 64
    ids = tokenize(tokenizer, captions, torch.device("cpu"))
    noisy = word_dropout(ids, tokenizer, torch.Generator().manual_seed(0))
    assert noisy.shape == ids.shape
    unknown, pad = tokenizer.unk_token_id, tokenizer.pad_token_id
    assert torch.equal(noisy[1::2], ids[1::2])  # an empty caption stays the unconditional one
    changed = 0
    for before, after in zip(ids[::2].tolist(), noisy[::2].tolist(), strict=True):
        words = [t for t in before if t != pad][1:-1]
        kept = [t for t in after if t != pad]
        assert kept[0] == tokenizer.bos_token_id and kept[-1] == tokenizer.eos_token_id
        noisy_words = kept[1:-1]
        assert len(noisy_words) - len(words) in (0, 1)
        # with an inserted <unk>, some <unk> taken out must leave the words, each kept or read as <unk>
        candidates = (
            [noisy_words]
            if len(noisy_words) == len(words)
            else [noisy_words[:i] + noisy_words[i + 1 :] for i, t in enumerate(noisy_words) if t == unknown]
        )
        assert any(
            all(n in (w, unknown) for w, n in zip(words, candidate, strict=True)) for candidate in candidates
        )
        changed += before != after
    assert 0 < changed < 64
