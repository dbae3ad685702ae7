"""The pieces one studio process shares between its REST API and its UI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from webapp.auth import Auth
from webapp.services.generation_jobs import GenerationJobs

if TYPE_CHECKING:
    from model.engine.engine_base import Engine
    from storage import Storage


@dataclass(frozen=True)
class Studio:
    storage: Storage
    engine: Engine
    jobs: GenerationJobs
    auth: Auth
