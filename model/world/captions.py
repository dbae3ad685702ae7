"""Captions for scenes, from many templates and synonyms.

Three splits. TRAIN phrasings and words are the only ones the model ever sees. HELDOUT phrasings recombine the
world's core words into sentence structures that never occur in training, so evaluation measures whether the
model understood the attributes rather than memorised sentences. UNSEEN captions go further, the way users type:
templates that never occur in training, synonyms training never uses (the tokenizer knows them from the
lexicon below, SYNONYM_OF, and nothing else) and opening words the vocabulary lacks. Held-out and unseen captions
always state colour, shape and background of every object.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

import numpy as np

from model.world.scene import Scene, SceneObject, relation, sample_scene

ATTRIBUTES = ("colour", "shape", "background", "position", "size")
SPLITS = ("train", "heldout", "unseen")

SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "star": ("star",),
    "cross": ("cross", "plus sign"),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "tiny"),
    "medium": ("medium",),
    "large": ("large", "big"),
}
POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "top left": ("in the top left corner", "at the top left", "in the upper left corner"),
    "top": ("at the top", "near the top"),
    "top right": ("in the top right corner", "at the top right", "in the upper right corner"),
    "left": ("on the left", "on the left side"),
    "centre": ("in the centre", "in the center", "in the middle"),
    "right": ("on the right", "on the right side"),
    "bottom left": ("in the bottom left corner", "at the bottom left", "in the lower left corner"),
    "bottom": ("at the bottom", "near the bottom"),
    "bottom right": ("in the bottom right corner", "at the bottom right", "in the lower right corner"),
}
# first object relative to the second, and the second relative to the first
RELATION_PHRASES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "left of": (("to the left of", "left of"), ("to the right of", "right of")),
    "above": (("above", "over"), ("below", "under")),
}

# More words for each value: TRAIN synonyms widen the training captions; UNSEEN ones are kept out of training
# for the evaluation of words the model was never taught. The core words above stay the held-out split's.
SYNONYMS: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "train": {
        "shape": {
            "circle": ("dot", "ball", "orb"),
            "square": ("block", "tile", "cube"),
            "triangle": ("wedge", "pyramid"),
            "star": ("pentagram", "starburst"),
            "cross": ("plus",),
        },
        "colour": {
            "red": ("crimson", "scarlet"),
            "orange": ("amber", "tangerine"),
            "yellow": ("golden", "lemon"),
            "green": ("emerald", "lime"),
            "blue": ("navy", "azure"),
            "purple": ("violet", "lilac"),
            "white": ("ivory", "snowy"),
            "black": ("ebony", "dark"),
        },
        "size": {"small": ("little", "mini"), "medium": ("average", "mid"), "large": ("huge", "giant")},
        "background": {"background": ("backdrop",)},
    },
    "unseen": {
        "shape": {
            "circle": ("disk", "sphere"),
            "square": ("rectangle", "slab"),
            "triangle": ("arrowhead", "delta"),
            "star": ("asterisk", "sparkle"),
            "cross": ("crosshair", "cruciform"),
        },
        "colour": {
            "red": ("ruby", "cherry"),
            "orange": ("apricot", "pumpkin"),
            "yellow": ("gold", "canary"),
            "green": ("jade", "leafy"),
            "blue": ("cobalt", "sapphire"),
            "purple": ("plum", "mauve"),
            "white": ("cream", "pearl"),
            "black": ("charcoal", "onyx"),
        },
        "size": {
            "small": ("petite", "wee"),
            "medium": ("regular", "moderate"),
            "large": ("enormous", "massive"),
        },
        "background": {"background": ("canvas",)},
    },
}
# Each synonym and the core word it means: the text encoder's embedding of a new word starts as the core word's.
SYNONYM_OF: dict[str, str] = {
    word: value
    for split in SYNONYMS.values()
    for attribute, table in split.items()
    for value, words in table.items()
    for word in words
}
# Words a caption may open with. The unseen ones are outside the vocabulary, as most of what users add is: the
# model must draw the same picture with or without them.
OPENINGS: dict[str, tuple[str, ...]] = {
    "train": ("please draw", "draw", "show me", "paint", "make", "i want", "give me", "just"),
    "unseen": ("could you sketch", "kindly depict", "generate", "we need", "render"),
}
OPENING_SHARE = 0.3  # share of training and unseen captions that open with one of OPENINGS


# Fields: {colour} {shape} (bare words), {obj} (noun phrase, sometimes with a size word), {pos} (position
# phrase), {bg} (background colour); two objects: {obj1} {obj2} with {rel} (first relative to second), or
# {rev_obj} {rev} {rev_ref} (second relative to first).
TEMPLATES: dict[tuple[str, int], tuple[str, ...]] = {
    ("train", 1): (
        "{colour} {shape}, {bg} background",
        "{colour} {shape}",
        "{obj}",
        "a {obj} on a {bg} background",
        "a picture of a {obj} {pos} on a {bg} background",
        "a {obj} {pos}",
        "{bg} background with a {obj} {pos}",
        "a drawing of a {obj}",
        "an image of a {obj} {pos}, {bg} background",
        "a {obj} against a {bg} background",
        "there is a {obj}",
        "a {obj}; the background is {bg}",
        "the {shape} is {colour}",
        # the background first, and other clause orders: without them the text side learns "the first colour
        # names the object" and swaps the two colours on held-out phrasings that put the background first
        "a {bg} background with a {obj} {pos}",
        "the background is {bg}; there is a {obj} {pos}",
        "the background is {bg} and the {shape} is {colour}",
        "the {shape} is {colour} and the background is {bg}",
        "a {bg} background; the {shape} is {colour}",
        "{pos} there is a {obj}, {bg} background",
        "a {obj} {pos} and a {bg} background",
        "an image of a {bg} background with a {obj}",
        "{colour} {shape} {pos} on {bg}",
        "a picture with a {obj} {pos} on a {bg} background",
        # free word order: the attribute after the noun, the position or background first
        "{shape} in {colour} on a {bg} background",
        "a {shape} coloured {colour}, {bg} background",
        "{colour} {shape} with a {bg} background",
        "a {bg} background and a {obj}",
        "{pos}, a {obj} on {bg}",
        "the {shape} is {colour}, the background {bg}",
        "{obj}, {bg} background, {pos}",
        "a {obj} sitting {pos}",
    ),
    ("heldout", 1): (
        "there is a {obj} {pos} and the background is {bg}",
        "a drawing of a {obj} {pos} against a {bg} background",
        "{bg} background, {colour} {shape}",
        "on a {bg} background, a {obj} {pos}",
        "an image with a {bg} background and a {obj}",
    ),
    ("train", 2): (
        "a {obj1} {rel} a {obj2} on a {bg} background",
        "a {obj1} {rel} a {obj2}",
        "a {rev_obj} {rev} a {rev_ref}",
        "{obj1} and {obj2}, {bg} background",
        "a picture of a {obj1} {rel} a {obj2}",
        "a {rev_obj} {rev} a {rev_ref} on a {bg} background",
        "a drawing of a {obj1} and a {obj2}",
        "the background is {bg}; a {obj1} {rel} a {obj2}",
        "a {bg} background with a {obj1} and a {obj2}",
        "{bg} background; a {rev_obj} {rev} a {rev_ref}",
    ),
    ("heldout", 2): (
        "there is a {obj1} {rel} a {obj2} and the background is {bg}",
        "on a {bg} background, a {rev_obj} {rev} a {rev_ref}",
        "a drawing of a {obj1} and a {obj2} against a {bg} background",
    ),
    # words training never shows ("atop", "behind", "should", "colour", "all") and sentence shapes it never uses
    ("unseen", 1): (
        "{obj} {pos} atop a {bg} background",
        "a {bg} background behind a {obj}",
        "the {shape} should be {colour} and the background {bg}",
        "{shape} of {colour} colour on a {bg} background",
        "with a {bg} background, a {obj} {pos}",
        "{bg} background all around a {obj}",
    ),
    ("unseen", 2): (
        "a {obj1} {rel} a {obj2} atop a {bg} background",
        "a {bg} background behind a {obj1} and a {obj2}",
    ),
}
_POSITION_FIELDS = {"pos", "rel", "rev"}
_SIZED_FIELDS = {"obj", "obj1", "obj2", "rev_obj", "rev_ref"}


@dataclass(frozen=True)
class Caption:
    text: str
    mentions: frozenset[str]  # the ATTRIBUTES the text states for every object


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _fields_of(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _synonyms(split: str, attribute: str, value: str) -> tuple[str, ...]:
    return SYNONYMS.get(split, {}).get(attribute, {}).get(value, ())


def _colour_word(colour: str, split: str, rng: np.random.Generator) -> str:
    """The held-out split names colours by their core word only (and draws nothing from rng for it)."""
    options = _synonyms(split, "colour", colour)
    return _pick(rng, (colour, *options)) if options else colour


ADJECTIVE_SWAP = 0.25  # share of training noun phrases with the size word after the colour


def _noun_phrase(obj: SceneObject, with_size: bool, rng: np.random.Generator, split: str) -> str:
    size = [_pick(rng, SIZE_WORDS[obj.size] + _synonyms(split, "size", obj.size))] if with_size else []
    words = [*size, _colour_word(obj.colour, split, rng)]
    if split == "train" and with_size and rng.random() < ADJECTIVE_SWAP:
        words.reverse()
    return " ".join([*words, _pick(rng, SHAPE_WORDS[obj.shape] + _synonyms(split, "shape", obj.shape))])


ARTICLE_DROP = 0.25  # share of training captions written without "a" / "an"
SEPARATOR_SWAP = 0.25  # share of training captions with "," and ";" swapped
CLAUSE_SHUFFLE = 0.25  # share of training captions whose clauses ("," or ";" apart) are shuffled


def _augment(text: str, rng: np.random.Generator) -> str:
    """Training-only noise a user's typing has too: articles dropped, the other clause separator, clauses in
    another order.

    It keeps the text side from keying on exact token positions: without it, the first colour of a short
    caption was read as the object's, whatever word followed it.
    """
    if rng.random() < ARTICLE_DROP:
        text = re.sub(r"\b(a|an) ", "", text)
    if rng.random() < SEPARATOR_SWAP:
        text = text.translate(str.maketrans(",;", ";,"))
    if rng.random() < CLAUSE_SHUFFLE:
        # joined by ";", which no held-out template uses: a shuffle must never write a held-out phrasing
        # ("{colour} {shape}, {bg} background" shuffled with "," would be the held-out "{bg} background, ...")
        clauses = re.split(r"\s*[,;]\s*", text)
        text = "; ".join(clauses[i] for i in rng.permutation(len(clauses)))
    return text


def caption(scene: Scene, rng: np.random.Generator, split: str = "train") -> Caption:
    """Describe a scene with a random template of the split ("train", "heldout" or "unseen")."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if len(scene.objects) not in (1, 2):
        raise ValueError(f"scene must have 1 or 2 objects, got {len(scene.objects)}")
    template = _pick(rng, TEMPLATES[split, len(scene.objects)])
    fields = _fields_of(template)
    with_size = bool(fields & _SIZED_FIELDS) and bool(rng.random() < 0.5)
    first = scene.objects[0]
    values = {
        "bg": _colour_word(scene.background, split, rng),
        "colour": _colour_word(first.colour, split, rng),
        "shape": _pick(rng, SHAPE_WORDS[first.shape] + _synonyms(split, "shape", first.shape)),
        "obj": _noun_phrase(first, with_size, rng, split),
        "pos": _pick(rng, POSITION_PHRASES[first.position]),
    }
    related = relation(scene)  # None for one object
    if related is not None:
        second = scene.objects[1]
        forward, backward = RELATION_PHRASES[related]
        values |= {
            "obj1": values["obj"],
            "obj2": _noun_phrase(second, with_size, rng, split),
            "rel": _pick(rng, forward),
            "rev": _pick(rng, backward),
        }
        values |= {"rev_obj": values["obj2"], "rev_ref": values["obj1"]}
    text = template.format(**values)
    if split != "heldout":
        nouns = ("background", *_synonyms(split, "background", "background"))
        text = re.sub(r"\bbackground\b", _pick(rng, nouns), text)
        if rng.random() < OPENING_SHARE:
            text = f"{_pick(rng, OPENINGS[split])} {text}"
    text = re.sub(r"\ba (?=[aeiou])", "an ", text)
    if split == "train":
        text = _augment(text, rng)
    mentions = {"colour", "shape"}
    mentions |= {"background"} if "bg" in fields else set()
    mentions |= {"position"} if fields & _POSITION_FIELDS else set()
    mentions |= {"size"} if with_size else set()
    return Caption(text, frozenset(mentions))


def canonical_caption(scene: Scene, mentions: frozenset[str]) -> str:
    """The same facts in the world's core words and one training template: what the text encoder understood
    before the synonyms, so a new encoder can be taught to read a widened caption as it read this one."""

    def noun_phrase(obj: SceneObject) -> str:
        size = [obj.size] if "size" in mentions else []
        return " ".join([*size, obj.colour, SHAPE_WORDS[obj.shape][0]])

    first = scene.objects[0]
    if len(scene.objects) == 1:
        where = f" {POSITION_PHRASES[first.position][0]}" if "position" in mentions else ""
        text = f"a {noun_phrase(first)}{where}"
    else:
        related = relation(scene)
        link = RELATION_PHRASES[related][0][0] if "position" in mentions and related else "and"
        text = f"a {noun_phrase(first)} {link} a {noun_phrase(scene.objects[1])}"
    if "background" in mentions:
        text += f" on a {scene.background} background"
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def vocabulary_words() -> list[str]:
    """Every word the widened captions may use that the text encoder should know: all synonyms, the unseen
    ones included (the tokenizer learns them from this lexicon only, never from a training caption)."""
    return sorted(SYNONYM_OF)


def heldout_prompts(
    seed: int, n: int, two_objects: bool = False, split: str = "heldout"
) -> list[tuple[Scene, Caption]]:
    """A fixed evaluation set: n scenes with exactly one (or two) objects, captioned with held-out phrasings
    (split "heldout") or with unseen words and phrasings ("unseen")."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if split not in ("heldout", "unseen"):
        raise ValueError(f"split must be 'heldout' or 'unseen', got {split!r}")
    rng = np.random.default_rng([seed, 2 if two_objects else 1])
    prompts = []
    for _ in range(n):
        scene = sample_scene(rng, two_object_prob=1.0 if two_objects else 0.0)
        prompts.append((scene, caption(scene, rng, split=split)))
    return prompts
