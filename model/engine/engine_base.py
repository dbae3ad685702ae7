"""The engine interface: submit a request, get a handle with progress, a result and cancel.

The web app and the CLI code against these two classes; ``LocalEngine`` (one process) and ``RayEngine`` (a Ray
Serve deployment of replicas) implement them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from model.engine.engine_common import EngineStatus, GenerationRequest, GenerationResult, ModelInfo, Progress


class JobHandle(ABC):
    id: str

    @abstractmethod
    def progress(self) -> Progress:
        """The job's state now."""

    @abstractmethod
    def result(self, timeout: float | None = None) -> GenerationResult:
        """Wait for the images. Raises JobCancelled / JobFailed, or TimeoutError after ``timeout`` seconds."""

    @abstractmethod
    def cancel(self) -> bool:
        """Cancel: a queued job leaves the queue, a running one leaves its batch at the next step.
        False when the job had already finished."""

    @abstractmethod
    def want_previews(self) -> None:
        """Someone watches this job: decode live previews of its images (``Progress.previews``) from now on."""

    @abstractmethod
    def subscribe(self, callback: Callable[[Progress], None]) -> None:
        """Call ``callback`` with every progress change (queue position, step, final state), from the
        engine's thread; a job that has finished calls it once, at once."""


class Engine(ABC):
    model_info: ModelInfo
    kind: str  # "local" | "ray": named by the health endpoint

    @abstractmethod
    def validate(self, request: GenerationRequest) -> GenerationRequest:
        """The request with defaults and a seed resolved; raises RequestError naming the bad field."""

    @abstractmethod
    def submit(self, request: GenerationRequest) -> JobHandle:
        """Validate and queue a request. Raises RequestError, QueueFull, or EngineClosed."""

    @abstractmethod
    def unknown_words(self, text: str) -> list[str]:
        """Words of ``text`` the model does not know (it reads each as its unknown token), as typed, each
        once; empty for models whose tokenizer spells every word. Cheap: callers check as the user types."""

    @abstractmethod
    def shutdown(self, wait: bool = True) -> None:
        """Stop taking jobs. wait=True: finish the queue, then stop; False: cancel what is left."""

    def status(self) -> EngineStatus:
        """The engine's kind and, for a distributed engine, its replicas (the health endpoint shows it)."""
        return EngineStatus(kind=self.kind)
