"""Captions for scenes, from many templates and synonyms.

Two disjoint template sets: TRAIN phrasings are the only ones the model ever sees; HELDOUT phrasings recombine
the same words into sentence structures that never occur in training, so evaluation measures whether the model
understood the attributes rather than memorised sentences. Held-out captions always state colour, shape and
background of every object.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

import numpy as np

from model.world.scene import Scene, SceneObject, relation, sample_scene

ATTRIBUTES = ("colour", "shape", "background", "position", "size")
SPLITS = ("train", "heldout")

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


def _noun_phrase(obj: SceneObject, with_size: bool, rng: np.random.Generator) -> str:
    words = [_pick(rng, SIZE_WORDS[obj.size])] if with_size else []
    return " ".join([*words, obj.colour, _pick(rng, SHAPE_WORDS[obj.shape])])


ARTICLE_DROP = 0.25  # share of training captions written without "a" / "an"
SEPARATOR_SWAP = 0.25  # share of training captions with "," and ";" swapped


def _augment(text: str, rng: np.random.Generator) -> str:
    """Training-only noise a user's typing has too: articles dropped, the other clause separator.

    It keeps the text side from keying on exact token positions: without it, the first colour of a short
    caption was read as the object's, whatever word followed it.
    """
    if rng.random() < ARTICLE_DROP:
        text = re.sub(r"\b(a|an) ", "", text)
    if rng.random() < SEPARATOR_SWAP:
        text = text.translate(str.maketrans(",;", ";,"))
    return text


def caption(scene: Scene, rng: np.random.Generator, split: str = "train") -> Caption:
    """Describe a scene with a random template of the split ("train" or "heldout")."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if len(scene.objects) not in (1, 2):
        raise ValueError(f"scene must have 1 or 2 objects, got {len(scene.objects)}")
    template = _pick(rng, TEMPLATES[split, len(scene.objects)])
    fields = _fields_of(template)
    with_size = bool(fields & _SIZED_FIELDS) and bool(rng.random() < 0.5)
    first = scene.objects[0]
    values = {
        "bg": scene.background,
        "colour": first.colour,
        "shape": _pick(rng, SHAPE_WORDS[first.shape]),
        "obj": _noun_phrase(first, with_size, rng),
        "pos": _pick(rng, POSITION_PHRASES[first.position]),
    }
    related = relation(scene)  # None for one object
    if related is not None:
        second = scene.objects[1]
        forward, backward = RELATION_PHRASES[related]
        values |= {
            "obj1": values["obj"],
            "obj2": _noun_phrase(second, with_size, rng),
            "rel": _pick(rng, forward),
            "rev": _pick(rng, backward),
        }
        values |= {"rev_obj": values["obj2"], "rev_ref": values["obj1"]}
    text = re.sub(r"\ba (?=[aeiou])", "an ", template.format(**values))
    if split == "train":
        text = _augment(text, rng)
    mentions = {"colour", "shape"}
    mentions |= {"background"} if "bg" in fields else set()
    mentions |= {"position"} if fields & _POSITION_FIELDS else set()
    mentions |= {"size"} if with_size else set()
    return Caption(text, frozenset(mentions))


def heldout_prompts(seed: int, n: int, two_objects: bool = False) -> list[tuple[Scene, Caption]]:
    """The fixed evaluation set: n scenes with exactly one (or two) objects, captioned with held-out
    phrasings."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng([seed, 2 if two_objects else 1])
    prompts = []
    for _ in range(n):
        scene = sample_scene(rng, two_object_prob=1.0 if two_objects else 0.0)
        prompts.append((scene, caption(scene, rng, split="heldout")))
    return prompts
