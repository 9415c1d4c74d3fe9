"""The audit log: every write and every denied call (who, what, where, when, outcome)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pgvault.orm import Base, UTCDateTime


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    principal_id: Mapped[str | None] = mapped_column(String(36))
    principal_name: Mapped[str | None] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(300))
    scope: Mapped[str] = mapped_column(String(600))
    method: Mapped[str] = mapped_column(String(10))
    status: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(100))
    #: JSON: what a write changed, where it matters (a server's old and new address).
    details: Mapped[str | None] = mapped_column(Text, nullable=True)

    @property
    def details_dict(self) -> dict[str, Any] | None:
        return json.loads(self.details) if self.details else None


def outcome_of(status: int) -> str:
    if status in (401, 403, 429):
        return "Denied"
    return "Succeeded" if status < 400 else "Failed"


def record(
    s: Session,
    *,
    at: datetime,
    principal_id: str | None,
    principal_name: str | None,
    action: str,
    scope: str,
    method: str,
    status: int,
    error_code: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    s.add(
        AuditEvent(
            id=str(uuid.uuid4()),
            at=at,
            principal_id=principal_id,
            principal_name=principal_name,
            action=action[:300],
            scope=scope[:600],
            method=method,
            status=status,
            outcome=outcome_of(status),
            error_code=error_code,
            details=json.dumps(details, sort_keys=True) if details else None,
        )
    )


def query(
    s: Session,
    *,
    scope_prefix: str | None = None,
    since: datetime | None = None,
    outcome: str | None = None,
    limit: int = 500,
) -> list[AuditEvent]:
    q = select(AuditEvent)
    if since:
        q = q.where(AuditEvent.at >= since)
    if outcome:
        q = q.where(AuditEvent.outcome == outcome)
    rows = list(s.scalars(q.order_by(AuditEvent.at.desc()).limit(limit * 4)))
    if scope_prefix:
        p = scope_prefix.rstrip("/").lower()
        rows = [r for r in rows if r.scope.lower() == p or r.scope.lower().startswith(p + "/")]
    return rows[:limit]
