"""Stage 1: a word-level tokenizer trained on the world's captions, saved in Hugging Face format.

The world's vocabulary is small and closed, so one token per word (punctuation split off) is the
simplest tokenizer that loses nothing. It frames every text as <bos> words <eos>; the text encoder pools
at <eos>, whose id (3) is deliberately not 2 (transformers' legacy argmax pooling).
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from model.train.common import MAX_TEXT_TOKENS
from model.world import caption_corpus, heldout_prompts
from model.world.captions import vocabulary_words

SPECIAL_TOKENS = ["<pad>", "<unk>", "<bos>", "<eos>"]
# Words a user may type that the world's captions never use still map to <unk>, not to an error.
EXTRA_WORDS = ["an", "the", "with", "and", "of", "-", "+"]


def train_tokenizer(out: Path, seed: int = 0, captions: int = 50_000) -> PreTrainedTokenizerBase:
    """Learn the words of the world's captions and lexicon; a tokenizer already in `out` (a shipped model laid
    out with --init-from) keeps every id it has and gains the new words after them, so the text encoder's
    learned rows still mean the same words."""
    heldout = heldout_prompts(seed + 1, 1000) + heldout_prompts(seed + 2, 1000, two_objects=True)
    corpus = list(caption_corpus(seed, captions)) + [c.text for _, c in heldout]
    words = corpus + vocabulary_words() + EXTRA_WORDS
    if (out / "tokenizer.json").exists():
        model = _extended(load_tokenizer(out).backend_tokenizer, words)
    else:
        model = Tokenizer(models.WordLevel(unk_token="<unk>"))
        model.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        model.pre_tokenizer = pre_tokenizers.Whitespace()
        model.train_from_iterator(words, trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS))
    bos, eos = model.token_to_id("<bos>"), model.token_to_id("<eos>")
    model.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", bos), ("<eos>", eos)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=model,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=MAX_TEXT_TOKENS,
    )
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    longest = max(len(tokenizer(c).input_ids) for c in corpus[:5000])
    print(
        f"[tokenizer] vocabulary {tokenizer.vocab_size} words, longest caption {longest} tokens "
        f"(limit {MAX_TEXT_TOKENS})"
    )
    return tokenizer


def _extended(model: Tokenizer, texts: list[str]) -> Tokenizer:
    """`model` with the words of `texts` it lacks appended, in order of first appearance."""
    vocabulary = model.get_vocab()
    for text in texts:
        for word, _ in model.pre_tokenizer.pre_tokenize_str(model.normalizer.normalize_str(text)):
            vocabulary.setdefault(word, len(vocabulary))
    extended = Tokenizer.from_str(model.to_str())
    extended.model = models.WordLevel(vocabulary, unk_token="<unk>")
    return extended


def load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(folder)
