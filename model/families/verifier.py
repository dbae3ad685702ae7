"""A learned judge of how well a picture shows what its text asks, for picking among decoder candidates.

The embedded model's decoder leaves much of the shape to its starting noise: over 4 seeds of one prompt,
single seeds draw the asked shape about 70% of the time, yet one of the 4 is right for 96% of prompts
(MODEL_CARD.md). The shape is settled 30% of the way into sampling, so the family starts several noises per
picture, reads each one's predicted clean picture at that point, and finishes only the one this verifier
scores highest. Our CLIP is too weak a judge for that (its embedding carries shape at 70%).

The verifier reads attributes, in groups of labels: an image classifier (transformers'
``ResNetForImageClassification``) gives each label's probability from the pixels; a small head on the model's
own CLIP text embedding gives the probability that the text asks for it. The score is the expected
log-likelihood of the text's labels under the picture's: ``sum q log p + (1 - q) log (1 - p)`` over "any of"
groups (shapes and colours present; a scene may hold two) and ``sum q log p`` over "one of" groups (the
background).

Folder (``verifier/`` beside ``prior/`` and ``decoder/``): ``verifier.json`` (groups and the head's sizes),
``image/`` (the classifier, safetensors) and ``text_head.safetensors``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import ResNetConfig, ResNetForImageClassification

ANY_OF, ONE_OF = "any_of", "one_of"


@dataclass(frozen=True)
class LabelGroup:
    name: str
    kind: str  # ANY_OF: several labels may hold at once (sigmoid); ONE_OF: exactly one holds (softmax)
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.kind not in (ANY_OF, ONE_OF) or not self.labels:
            raise ValueError(f"label group {self.name!r}: kind must be {ANY_OF} or {ONE_OF}, with labels")


class AttributeVerifier(torch.nn.Module):
    """Scores (text embedding, picture) pairs; higher means the picture shows more of what the text asks."""

    def __init__(
        self,
        groups: tuple[LabelGroup, ...],
        text_dim: int,
        *,
        hidden: int = 256,
        image: ResNetForImageClassification | None = None,
    ) -> None:
        super().__init__()
        self.groups = groups
        self.text_dim, self.hidden = text_dim, hidden
        labels = sum(len(g.labels) for g in groups)
        self.image = image or ResNetForImageClassification(
            ResNetConfig(
                num_channels=3,
                layer_type="basic",
                embedding_size=32,
                hidden_sizes=[32, 64, 128],
                depths=[1, 1, 1],
                num_labels=labels,
            )
        )
        if self.image.config.num_labels != labels:
            raise ValueError(
                f"the image classifier has {self.image.config.num_labels} labels, the groups {labels}"
            )
        self.text_head = torch.nn.Sequential(
            torch.nn.Linear(text_dim, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, labels)
        )

    def image_logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """Label logits [B, L] for pictures [B, 3, H, W] in [0, 1]."""
        return self.image(pixel_values=pixels * 2 - 1).logits

    def text_logits(self, text_embeds: torch.Tensor) -> torch.Tensor:
        """Label logits [B, L] for CLIP text embeddings [B, D]."""
        return self.text_head(text_embeds)

    def score(self, text_embeds: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """[B]: the expected log-likelihood of each text's labels under its picture's label probabilities."""
        text, image = self.text_logits(text_embeds).float(), self.image_logits(pixels).float()
        total = torch.zeros(len(pixels), device=pixels.device)
        for group, (asked, seen) in zip(self.groups, self._split(text, image), strict=True):
            if group.kind == ANY_OF:
                wanted = torch.sigmoid(asked)
                total += (wanted * F.logsigmoid(seen) + (1 - wanted) * F.logsigmoid(-seen)).sum(1)
            else:
                total += (F.softmax(asked, 1) * F.log_softmax(seen, 1)).sum(1)
        return total

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Training loss of either side's logits against 0/1 label targets [B, L], averaged over labels."""
        total = logits.new_zeros(())
        for group, (guess, truth) in zip(self.groups, self._split(logits, targets), strict=True):
            if group.kind == ANY_OF:
                total += F.binary_cross_entropy_with_logits(guess, truth, reduction="sum") / len(guess)
            else:
                total += F.cross_entropy(guess, truth.argmax(1)) * len(group.labels)
        return total / logits.shape[1]

    def _split(self, *tensors: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        sizes = [len(g.labels) for g in self.groups]
        return list(zip(*(t.split(sizes, dim=1) for t in tensors), strict=True))

    def save_pretrained(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.image.save_pretrained(folder / "image", safe_serialization=True)
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in self.text_head.state_dict().items()},
            folder / "text_head.safetensors",
        )
        config = {
            "text_dim": self.text_dim,
            "hidden": self.hidden,
            "groups": [{"name": g.name, "kind": g.kind, "labels": list(g.labels)} for g in self.groups],
        }
        (folder / "verifier.json").write_text(json.dumps(config, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, folder: Path, *, dtype: torch.dtype = torch.float32) -> AttributeVerifier:
        """Load from safetensors only; raises ValueError or OSError on a broken folder."""
        config = json.loads((folder / "verifier.json").read_text())
        try:
            groups = tuple(LabelGroup(g["name"], g["kind"], tuple(g["labels"])) for g in config["groups"])
            text_dim, hidden = int(config["text_dim"]), int(config["hidden"])
        except (KeyError, TypeError) as error:
            raise ValueError(f"{folder / 'verifier.json'}: missing or malformed {error}") from error
        image = ResNetForImageClassification.from_pretrained(
            folder / "image", use_safetensors=True, local_files_only=True
        )
        verifier = cls(groups, text_dim, hidden=hidden, image=image)
        verifier.text_head.load_state_dict(load_file(folder / "text_head.safetensors"))
        return verifier.to(dtype).eval().requires_grad_(False)
