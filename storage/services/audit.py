"""The audit log: who did what and when. Events are written by the other services, in the same
transaction as the action they describe; this service reads them back for admins."""

from __future__ import annotations

from sqlalchemy import func, select

from ..models import AuditEvent
from ..types import Actor, AuditEventInfo, Page, Role
from .helpers import Service, acting_user, check_page


def _info(event: AuditEvent) -> AuditEventInfo:
    return AuditEventInfo(
        id=event.id,
        actor_id=event.actor_id,
        actor_name=event.actor_name,
        action=event.action,
        target_type=event.target_type,
        target_id=event.target_id,
        detail=dict(event.detail),
        created_at=event.created_at,
    )


class AuditService(Service):
    def list_events(
        self, actor: Actor, *, action: str | None = None, page: int = 1, page_size: int = 50
    ) -> Page[AuditEventInfo]:
        """Newest first; `action` filters by name ("login", "review.decide", a prefix like "user.")."""
        check_page(page, page_size)
        with self.db.read() as session:
            acting_user(session, actor, Role.ADMIN, operator=True)
            stmt = select(AuditEvent)
            if action:
                stmt = stmt.where(AuditEvent.action.startswith(action, autoescape=True))
            total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
            events = session.scalars(
                stmt.order_by(AuditEvent.id.desc()).limit(page_size).offset((page - 1) * page_size)
            )
            return Page(tuple(_info(e) for e in events), total, page, page_size)
