"""What every model family offers the engine: batches of rows, progress and cancel, image guidance rows.

A batch is a list of ``Row``s: one image of one job each. Rows carry their own seed (a CPU
``torch.Generator`` per row), prompt embedding, CFG scale and guidance reference, so a row's image does not
depend on which other rows share its batch (up to floating-point reduction order).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import PIL.Image
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel

from model.engine.engine_common import GenerationRequest, ModelInfo, Stage, resolved
from model.guidance import RowGuidance

if TYPE_CHECKING:
    from model.families.denoising import StepHook


@dataclass(frozen=True)
class Row:
    """One image to make: image ``index`` of a job whose resolved request is ``request``."""

    request: GenerationRequest
    index: int = 0
    tag: Any = None  # the engine's handle for the job; opaque to families

    @property
    def seed(self) -> int:
        assert self.request.seed is not None, "rows take resolved requests"
        return self.request.seed + self.index


class BatchControl(Protocol):
    """How a running batch reports progress and learns which rows are still wanted (not cancelled)."""

    def on_stage(self, stage: Stage, rows: Sequence[Row]) -> None:
        """The batch enters ``stage`` (the prior, if the family has one, then the denoising loop)."""

    def on_step(self, step: int, total: int, rows: Sequence[Row]) -> None: ...

    def wanted(self, row: Row) -> bool: ...


class WordVocabulary:
    """The words a word-level tokenizer knows, checked on a private copy of its fast backend: the worker's own
    calls set truncation and padding on the shared one, which a check from a web thread must never touch."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._unknown = tokenizer.unk_token_id
        special = set(tokenizer.all_special_ids)
        vocabulary = self._tokenizer.get_vocab()
        self.words = [
            word for word in sorted(vocabulary, key=vocabulary.__getitem__) if vocabulary[word] not in special
        ]
        """Every word and sign the model knows, in the tokenizer's order (special tokens left out)."""

    @staticmethod
    def applies_to(tokenizer: Any) -> bool:
        """Only a word-level tokenizer has words it does not know."""
        backend = getattr(tokenizer, "backend_tokenizer", None)
        return isinstance(getattr(backend, "model", None), WordLevel) and tokenizer.unk_token_id is not None

    def unknown_words(self, text: str) -> list[str]:
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        found = [
            text[start:end]
            for token, (start, end) in zip(encoding.ids, encoding.offsets, strict=True)
            if token == self._unknown
        ]
        first: dict[str, str] = {}
        for word in found:  # the model lowercases: "Teal" and "teal" are one word, named as first typed
            first.setdefault(word.casefold(), word)
        return list(first.values())


class BatchCancelled(Exception):
    """Every row left the batch (all of its jobs were cancelled); the denoising loop stopped early."""


class Family(ABC):
    """A loaded model: its ModelInfo, which requests may share a batch, and batch generation."""

    info: ModelInfo

    def check_request(self, request: GenerationRequest) -> None:  # noqa: B027 - optional hook, no-op by default
        """Family-specific checks beyond ModelInfo's; raises RequestError."""

    def unknown_words(self, text: str) -> list[str]:
        """Words of ``text`` the text encoder never sees (its tokenizer reads them as the unknown token), as
        typed, each once. Subword (BPE) tokenizers, as in CLIP, spell every word from pieces: none."""
        return []

    @abstractmethod
    def batch_key(self, request: GenerationRequest) -> Hashable:
        """Requests with equal keys can run in one batch (same size, steps, scheduler, ...)."""

    @abstractmethod
    def generate(
        self, rows: Sequence[Row], control: BatchControl | None = None, step_hook: StepHook | None = None
    ) -> list[PIL.Image.Image | None]:
        """One image per row, in order; None for rows that left the batch. Raises BatchCancelled if all left.

        ``step_hook`` sees every step of the denoising loop (e.g. to decode live previews of the predicted
        clean latents); it runs in the worker, so it should be quick.
        """

    @abstractmethod
    def preview_images(self, latents: torch.Tensor) -> list[PIL.Image.Image]:
        """Cheap pictures of (predicted clean) latents [B, C, h, w] for live previews, at most the model's size."""

    @abstractmethod
    def encode_reference(self, image: PIL.Image.Image, width: int, height: int) -> torch.Tensor:
        """A guidance image in this family's latent space, at the latent size of width x height."""

    def guidance_rows(self, rows: Sequence[Row]) -> list[RowGuidance | None]:
        """Each row's image guidance (None without one); a job's reference is encoded once for all its rows."""
        references: dict[int, torch.Tensor] = {}
        out: list[RowGuidance | None] = []
        for row in rows:
            request = row.request
            if request.guidance_image is None or request.image_guidance_scale <= 0:
                out.append(None)
                continue
            if id(request) not in references:
                references[id(request)] = self.encode_reference(
                    request.guidance_image, resolved(request.width), resolved(request.height)
                )
            out.append(
                RowGuidance(
                    references[id(request)],
                    request.image_guidance_scale,
                    request.image_guidance_decay,
                    request.image_guidance_noised,
                    row.seed,
                )
            )
        return out
