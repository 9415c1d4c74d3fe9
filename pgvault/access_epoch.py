"""The access epoch: one counter that changes whenever who-may-do-what changes.

Every API call authenticates its token and checks a role; done from scratch that is four
queries and an ORM load of every role (measured: a third of the server's time under load,
benchmarks/api_load.py). The access service caches both answers in memory, tagged with this
epoch, and reads only the epoch per call. Any flush that adds, changes or deletes a principal,
a revoked token, a custom role or a role assignment bumps the epoch in the same transaction
(a session event, so no code path can forget it), and every `pgvault serve` sharing the
metadata database sees the new value on its next call: a revoked token or a removed role stops
working at once, in every process.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Integer, event, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, Session, mapped_column

from pgvault.identity import Principal, RevokedToken
from pgvault.orm import Base
from pgvault.rbac import Assignment, CustomRole

#: What, when written, can change an authentication or authorisation answer.
WATCHED = (Principal, RevokedToken, CustomRole, Assignment)
ROW_ID = 1


class AccessEpoch(Base):
    """A single row (id 1): the epoch."""

    __tablename__ = "access_epoch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


def current(s: Session) -> int:
    """The epoch now (0 if the row is missing, e.g. a database created without migrations)."""
    return s.scalar(select(AccessEpoch.value).where(AccessEpoch.id == ROW_ID)) or 0


def read(conn: Connection) -> int:
    """`current`, on a plain connection (the API reads it once per call)."""
    return conn.execute(select(AccessEpoch.value).where(AccessEpoch.id == ROW_ID)).scalar() or 0


def _changes_access(session: Session) -> bool:
    for obj in (*session.new, *session.deleted):
        if isinstance(obj, WATCHED):
            return True
    return any(isinstance(o, WATCHED) and session.is_modified(o) for o in session.dirty)


@event.listens_for(Session, "before_flush")
def _bump_on_access_change(session: Session, _ctx: Any, _instances: Any) -> None:
    """Bump the epoch in the flushing transaction when it writes a watched row."""
    if not _changes_access(session):
        return
    conn = session.connection()
    done = conn.execute(
        update(AccessEpoch).where(AccessEpoch.id == ROW_ID).values(value=AccessEpoch.value + 1)
    )
    if done.rowcount == 0:
        conn.execute(insert(AccessEpoch).values(id=ROW_ID, value=1))
