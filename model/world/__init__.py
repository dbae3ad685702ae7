"""The procedural world of coloured shapes: scenes, a torch renderer, captions, an analyzer and a data
stream."""

from model.world.analyzer import Analysis, DetectedObject, analyze, score
from model.world.captions import ATTRIBUTES, Caption, caption, heldout_prompts
from model.world.render import render_image, render_scenes
from model.world.scene import COLOURS, POSITIONS, SHAPES, SIZES, Scene, SceneObject, relation, sample_scene
from model.world.stream import WorldBatch, caption_corpus, world_batch

__all__ = [
    "ATTRIBUTES",
    "COLOURS",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "Analysis",
    "Caption",
    "DetectedObject",
    "Scene",
    "SceneObject",
    "WorldBatch",
    "analyze",
    "caption",
    "caption_corpus",
    "heldout_prompts",
    "relation",
    "render_image",
    "render_scenes",
    "sample_scene",
    "score",
    "world_batch",
]
