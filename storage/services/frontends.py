"""The front-ends serving one database. Each `app.py serve` registers an instance id and beats a heartbeat,
so the others can tell a live front-end's jobs from a dead one's: only jobs whose front-end stopped beating
are marked `interrupted` (GenerationService.interrupt_orphaned; docs/RELIABILITY.md, "Several front-ends").
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select, update

from ..errors import ValidationFailed
from ..models import Frontend, utcnow
from .helpers import Service, changed_rows

MAX_FRONTEND_ID = 64


def check_frontend_id(frontend_id: object) -> str:
    if not isinstance(frontend_id, str) or not 0 < len(frontend_id) <= MAX_FRONTEND_ID:
        raise ValidationFailed("frontend_id", f"A front-end's id is 1 to {MAX_FRONTEND_ID} characters.")
    return frontend_id


class FrontendService(Service):
    """Acts for no user: the serving processes call it about themselves."""

    def register(self, frontend_id: str) -> None:
        """Start beating as `frontend_id`. A restart under the same id takes its old row over."""
        frontend_id = check_frontend_id(frontend_id)
        with self.write() as session:
            now = utcnow()
            row = session.get(Frontend, frontend_id)
            if row is None:
                session.add(Frontend(id=frontend_id, started_at=now, heartbeat_at=now))
            else:
                row.started_at = row.heartbeat_at = now

    def beat(self, frontend_id: str) -> bool:
        """Record a sign of life. False when the row was gone: another front-end took this one for dead
        (and interrupted its jobs); it is registered again, so its new jobs are not taken for orphans."""
        with self.write() as session:
            if changed_rows(
                session, update(Frontend).where(Frontend.id == frontend_id).values(heartbeat_at=utcnow())
            ):
                return True
        self.register(frontend_id)
        return False

    def live(self, stale_after_s: float) -> list[str]:
        """The ids of the front-ends that beat within the last `stale_after_s` seconds."""
        cutoff = utcnow() - timedelta(seconds=stale_after_s)
        with self.db.read() as session:
            return list(session.scalars(select(Frontend.id).where(Frontend.heartbeat_at >= cutoff)))

    def remove(self, frontend_id: str) -> None:
        """A front-end that stops cleanly leaves (after marking its own unfinished jobs)."""
        with self.write() as session:
            session.execute(delete(Frontend).where(Frontend.id == frontend_id))
