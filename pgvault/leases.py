"""Leases in the metadata database: exactly one holder at a time, across processes and machines.

A lease is taken or renewed with one conditional UPDATE (or INSERT) and expires
unless renewed, so a crashed holder is replaced after `ttl` without coordination.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import String, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from pgvault.db import Database
from pgvault.orm import Base, UTCDateTime


class Lease(Base):
    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


def acquire(db: Database, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the lease; True if `holder` holds it until now + ttl."""
    with db.session() as s:
        res = s.execute(
            update(Lease)
            .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
            .values(holder=holder, expires_at=now + ttl)
        )
        if res.rowcount == 1:  # type: ignore[attr-defined]
            return True
        if s.get(Lease, name) is not None:
            return False
    try:
        with db.session() as s:
            s.add(Lease(name=name, holder=holder, expires_at=now + ttl))
        return True
    except IntegrityError:
        return False  # another process created it first


def release(db: Database, name: str, holder: str) -> None:
    with db.session() as s:
        s.execute(
            update(Lease)
            .where(Lease.name == name, Lease.holder == holder)
            .values(expires_at=datetime(1970, 1, 1))
        )
