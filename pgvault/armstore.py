"""Storing ARM-style resources: rows addressed by (subscription, resource group, name).

Backup vaults, key vaults, servers and storage accounts are stored alike: an immutable
id, the lower-cased ARM id as a unique key (names are case-insensitive in ARM), the
subscription and resource group they live in, a region and a creation time. The mixin
declares those columns once and the functions below get, list and create such rows once
for all of them, so a new resource type cannot get the lookup rules subtly wrong.
`one` is the get-or-404 every other lookup (policies, instances, points) shares.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import Select, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pgvault.errors import Code, NotFound, PgVaultError
from pgvault.orm import UTCDateTime

T = TypeVar("T")
#: ids per IN list (well under SQLite's bound on query parameters)
IN_CHUNK = 500


class _Keyed(Protocol):
    id: Any


K = TypeVar("K", bound=_Keyed)


class ArmResource:
    """The columns every ARM-style resource has (mixed into its mapped class).

    Each class declares its own `name` column: its length and uniqueness differ
    (key-vault and storage-account names are global, like Azure's).
    """

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    arm_key: Mapped[str] = mapped_column(String(400), unique=True)
    subscription_id: Mapped[str] = mapped_column(String(36))
    resource_group: Mapped[str] = mapped_column(String(90))
    location: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    if TYPE_CHECKING:
        name: Mapped[str]

        def __init__(self, **columns: Any) -> None: ...


R = TypeVar("R", bound=ArmResource)


def one(s: Session, query: Select[T], missing: str, code: Code = Code.ResourceNotFound) -> T:
    """The row `query` selects, or a 404 with `missing` (say how to create or list them)."""
    row = s.scalar(query)
    if row is None:
        raise NotFound(missing, code=code)
    return row


def by_ids(s: Session, cls: type[K], ids: Iterable[str]) -> dict[str, K]:
    """Rows of `cls` by primary key, in one query per IN_CHUNK ids: list pages join their
    rows to vaults, instances, servers and policies this way, not with a lookup per row
    (each lookup a round trip to a PostgreSQL metadata database)."""
    wanted = sorted(set(ids))
    found: dict[str, K] = {}
    for at in range(0, len(wanted), IN_CHUNK):
        chunk = wanted[at : at + IN_CHUNK]
        found.update((r.id, r) for r in s.scalars(select(cls).where(cls.id.in_(chunk))))
    return found


def add(s: Session, row: T) -> T:
    """Insert `row` now (flushed), so its id and constraints are checked at once."""
    s.add(row)
    s.flush()
    return row


def find(s: Session, cls: type[R], arm_id: str) -> R | None:
    """The resource with this ARM id (any letter case), if it exists."""
    return s.scalar(select(cls).where(cls.arm_key == arm_id.lower()))


def get(s: Session, cls: type[R], arm_id: str, missing: str) -> R:
    """The resource with this ARM id, or ResourceNotFound with `missing` as the message."""
    return one(s, select(cls).where(cls.arm_key == arm_id.lower()), missing)


def list_in(s: Session, cls: type[R], sub: str, rg: str | None) -> list[R]:
    """The resources of a subscription, or of one resource group in it, by name."""
    q = select(cls).where(cls.subscription_id == sub.lower())
    if rg:
        q = q.where(func.lower(cls.resource_group) == rg.lower())
    return list(s.scalars(q.order_by(cls.name)))


def find_global(s: Session, cls: type[R], name: str, arm_id: str, taken: PgVaultError) -> R | None:
    """For globally named resources: the one with this name here, None if the name is free.

    Raises `taken` when another subscription or resource group holds the name.
    """
    row = s.scalar(select(cls).where(cls.name == name))
    if row is not None and row.arm_key != arm_id.lower():
        raise taken
    return row


def create(
    s: Session,
    cls: type[R],
    arm_id: str,
    sub: str,
    rg: str,
    name: str,
    location: str,
    now: datetime,
    **columns: Any,
) -> R:
    """Insert a new resource of `cls` with a fresh id; `location` is already normalized."""
    row = cls(
        id=str(uuid.uuid4()),
        arm_key=arm_id.lower(),
        name=name,
        subscription_id=sub.lower(),
        resource_group=rg,
        location=location,
        created_at=now,
        **columns,
    )
    return add(s, row)
