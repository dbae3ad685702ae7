import re

import numpy as np
import pytest

from model.world.captions import (
    ATTRIBUTES,
    OPENINGS,
    POSITION_PHRASES,
    RELATION_PHRASES,
    SHAPE_WORDS,
    SIZE_WORDS,
    SYNONYM_OF,
    SYNONYMS,
    canonical_caption,
    caption,
    heldout_prompts,
)
from model.world.scene import COLOURS, relation, sample_scene
from model.world.stream import caption_corpus


def _captioned(seed: int, count: int, split: str, two_object_prob: float = 0.3):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        scene = sample_scene(rng, two_object_prob)
        yield scene, caption(scene, rng, split)


def _words(texts) -> set[str]:
    return {w for t in texts for w in re.findall(r"[a-z]+", t)}


def _in_core_words(text: str) -> str:
    """The text with every synonym replaced by the core word it means."""
    text = text.replace("plus sign", "cross")  # a core phrase that holds a synonym ("plus")
    for word, core in SYNONYM_OF.items():
        text = re.sub(rf"\b{word}\b", core, text)
    return text


def _skeleton(text: str) -> str:
    """The phrasing with every attribute word replaced by a placeholder."""
    text = _in_core_words(text)
    phrases = [(p, "POS") for ps in POSITION_PHRASES.values() for p in ps]
    phrases += [(p, "REL") for pair in RELATION_PHRASES.values() for ps in pair for p in ps]
    phrases += [(w, "SHAPE") for ws in SHAPE_WORDS.values() for w in ws]
    phrases += [(w, "SIZE") for ws in SIZE_WORDS.values() for w in ws] + [(c, "COLOUR") for c in COLOURS]
    for phrase, placeholder in sorted(phrases, key=lambda p: -len(p[0])):
        text = re.sub(rf"\b{phrase}\b", placeholder, text)
    return re.sub(r"\ban\b", "a", text)


@pytest.mark.parametrize("split", ["train", "heldout", "unseen"])
def test_captions_describe_their_scene(split):
    for scene, cap in _captioned(0, 400, split):
        text = _in_core_words(cap.text)
        assert {"colour", "shape"} <= cap.mentions <= set(ATTRIBUTES)
        named_colours = {c for c in COLOURS if re.search(rf"\b{c}\b", text)}
        expected = {o.colour for o in scene.objects} | (
            {scene.background} if "background" in cap.mentions else set()
        )
        assert named_colours == expected, cap.text
        for obj in scene.objects:
            sizes = "|".join(w for ws in SIZE_WORDS.values() for w in ws)
            forms = (
                rf"\b{obj.colour} (({sizes}) )?{w}\b|\b{w} (is|in|coloured|should be|of) {obj.colour}\b"
                for w in SHAPE_WORDS[obj.shape]
            )
            assert any(re.search(pattern, text) for pattern in forms), cap.text
            if "size" in cap.mentions:
                size = "|".join(SIZE_WORDS[obj.size])
                assert re.search(rf"\b({size}) {obj.colour}\b|\b{obj.colour} ({size})\b", text), cap.text
        if "position" in cap.mentions:
            if len(scene.objects) == 1:
                assert any(p in text for p in POSITION_PHRASES[scene.objects[0].position]), text
            else:
                assert any(p in text for ps in RELATION_PHRASES[relation(scene)] for p in ps), text


def test_heldout_phrasings_never_appear_in_training_and_use_known_words():
    train = [cap.text for _, cap in _captioned(1, 6000, "train")]
    heldout = [cap.text for _, cap in _captioned(2, 1000, "heldout")]
    unseen = [cap.text for _, cap in _captioned(2, 1000, "unseen")]
    train_skeletons = {_skeleton(t) for t in train}
    heldout_skeletons, unseen_skeletons = {_skeleton(t) for t in heldout}, {_skeleton(t) for t in unseen}
    assert len(train_skeletons) >= 15 and len(heldout_skeletons) >= 6 and len(unseen_skeletons) >= 8
    assert not train_skeletons & heldout_skeletons
    assert not train_skeletons & unseen_skeletons
    train_words = {w for t in train for w in re.findall(r"[a-z]+", t)}
    assert {
        w for t in heldout for w in re.findall(r"[a-z]+", t)
    } <= train_words  # no word unknown to the tokenizer


def test_unseen_words_never_reach_the_training_caption_stream():
    unseen_synonyms = {w for table in SYNONYMS["unseen"].values() for words in table.values() for w in words}
    unseen_openings = {w for opening in OPENINGS["unseen"] for w in opening.split()}
    trained = _words(caption_corpus(seed=0, n=8000))
    assert not trained & (unseen_synonyms | unseen_openings)
    train_synonyms = {w for table in SYNONYMS["train"].values() for words in table.values() for w in words}
    assert train_synonyms <= trained  # every training synonym is taught
    unseen = [cap.text for _, cap in _captioned(5, 500, "unseen")]
    used = _words(unseen)
    assert len(used & unseen_synonyms) >= 0.8 * len(unseen_synonyms) and used & unseen_openings


def test_the_canonical_caption_states_the_same_facts_in_core_words():
    for scene, cap in _captioned(6, 300, "train"):
        canonical = canonical_caption(scene, cap.mentions)
        assert not _words([canonical]) & set(SYNONYM_OF), canonical
        assert {o.colour for o in scene.objects} <= _words([canonical])
        assert canonical.endswith(f"{scene.background} background") == ("background" in cap.mentions)
        shapes = {SHAPE_WORDS[o.shape][0].split()[0] for o in scene.objects}
        assert shapes <= _words([canonical]), canonical


def test_training_captions_carry_typing_noise_and_heldout_ones_never_do():
    def noisy(text: str) -> bool:  # an article dropped, or the separator of a template swapped
        return text.startswith(("picture of", "drawing of", "image of")) or ", the background is" in text

    train = [cap.text for _, cap in _captioned(4, 2000, "train")]
    assert 0 < sum(map(noisy, train)) < len(train) // 2
    assert not any(noisy(cap.text) for _, cap in _captioned(4, 2000, "heldout"))


def test_heldout_always_states_colour_shape_background_but_train_sometimes_omits():
    heldout = [cap.mentions for _, cap in _captioned(3, 500, "heldout")]
    assert all({"colour", "shape", "background"} <= m for m in heldout)
    assert any("position" in m for m in heldout) and any("size" in m for m in heldout)
    train = [cap.mentions for _, cap in _captioned(3, 500, "train")]
    for attribute in ("background", "position", "size"):
        assert any(attribute in m for m in train) and any(attribute not in m for m in train)


def test_heldout_prompts_are_a_fixed_evaluation_set():
    first, again = heldout_prompts(7, 20), heldout_prompts(7, 20)
    assert first == again and first != heldout_prompts(8, 20)
    assert all(len(scene.objects) == 1 for scene, _ in first)
    assert all(len(scene.objects) == 2 for scene, _ in heldout_prompts(7, 20, two_objects=True))


def test_bad_split_is_rejected():
    scene = sample_scene(np.random.default_rng(0))
    with pytest.raises(ValueError, match="split"):
        caption(scene, np.random.default_rng(0), split="test")
