"""The generation engine: the interface (engine_base), its types (engine_common), the local worker."""

from model.engine.engine_base import Engine, JobHandle
from model.engine.engine_common import (
    EngineClosed,
    GenerationRequest,
    GenerationResult,
    JobCancelled,
    JobFailed,
    JobStatus,
    MixIngredient,
    ModelInfo,
    Progress,
    QueueFull,
    RequestError,
    Stage,
)

__all__ = [
    "Engine",
    "EngineClosed",
    "GenerationRequest",
    "GenerationResult",
    "JobCancelled",
    "JobFailed",
    "JobHandle",
    "JobStatus",
    "LocalEngine",
    "MixIngredient",
    "ModelInfo",
    "Progress",
    "QueueFull",
    "RequestError",
    "Stage",
]


def __getattr__(name: str) -> object:
    """LocalEngine loads lazily: model.families imports this package's types, and the engine imports them."""
    if name == "LocalEngine":
        from model.engine.engine_local import LocalEngine

        return LocalEngine
    raise AttributeError(name)
