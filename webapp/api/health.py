"""`GET /health`: liveness for monitors; the only endpoint that needs no token.

It names the engine and, for `--engine ray`, each replica with its state and the jobs it served, so an
operator sees the scale-out work. None of it is secret: counts only, no user names, job ids or addresses
(Ray's own dashboard shows the nodes to those who can reach it)."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter

from webapp.context import Studio
from webapp.schemas import EngineOut, HealthOut, ReplicaOut


def router(studio: Studio) -> APIRouter:
    api = APIRouter(tags=["health"])

    @api.get("/health", response_model=HealthOut)
    def health() -> HealthOut:
        info = studio.engine.model_info
        engine = studio.engine.status()
        return HealthOut(
            status="ok",
            model=info.name,
            family=info.family,
            auth=studio.auth.enabled,
            engine=EngineOut(
                kind=engine.kind,
                state=engine.state,
                replica_states=engine.replica_states,
                replicas=[ReplicaOut(**dataclasses.asdict(replica)) for replica in engine.replicas],
            ),
        )

    return api
