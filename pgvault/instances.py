"""Backup instances: one database on one registered server, protected in one vault."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pgvault import arm
from pgvault.db import Base, UTCDateTime
from pgvault.errors import BadRequest, NotFound

PROTECTION_CONFIGURED = "ProtectionConfigured"


class Instance(Base):
    __tablename__ = "backup_instances"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    vault_id: Mapped[str] = mapped_column(ForeignKey("backup_vaults.id"))
    name: Mapped[str] = mapped_column(String(128))
    name_key: Mapped[str] = mapped_column(String(128), unique=False)
    server_id: Mapped[str] = mapped_column(ForeignKey("servers.id"))
    database: Mapped[str] = mapped_column(String(63))
    datasource_key: Mapped[str] = mapped_column(String(500), unique=True)
    policy_id: Mapped[str] = mapped_column(ForeignKey("backup_policies.id"))
    secret_uri: Mapped[str] = mapped_column(String(500))
    protection_state: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


def check_database_name(name: str) -> str:
    """PostgreSQL database names: 1-63 bytes, no NUL; anything else is refused at the edge."""
    if not isinstance(name, str) or not name or len(name.encode()) > 63 or "\x00" in name:
        raise BadRequest(
            f"Invalid database name {name!r}: use 1-63 bytes.",
            code="BadParameter",
            target="database",
        )
    return name


def default_name(server: str, database: str) -> str:
    """Azure's CLI naming: `{server}-{database}-{uuid}` (trimmed to a valid resource name)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in database)
    return f"{server}-{safe}"[:90] + f"-{uuid.uuid4().hex[:8]}"


def get(s: Session, vault_id: str, name: str) -> Instance:
    inst = s.scalar(
        select(Instance).where(Instance.vault_id == vault_id, Instance.name_key == name.lower())
    )
    if inst is None:
        raise NotFound(
            f"Backup instance {name!r} not found in this vault. "
            "List them with `pgvault instance list`.",
            code="ResourceNotFound",
        )
    return inst


def find(s: Session, vault_id: str, name: str) -> Instance | None:
    return s.scalar(
        select(Instance).where(Instance.vault_id == vault_id, Instance.name_key == name.lower())
    )


def list_instances(s: Session, vault_id: str) -> list[Instance]:
    return list(
        s.scalars(select(Instance).where(Instance.vault_id == vault_id).order_by(Instance.name))
    )


def protecting(s: Session, datasource_id: str) -> Instance | None:
    """The instance (in any vault) already protecting this database, if any."""
    return s.scalar(select(Instance).where(Instance.datasource_key == datasource_id.lower()))


def create(
    s: Session,
    vault_id: str,
    name: str,
    server_id: str,
    database: str,
    datasource_id: str,
    policy_id: str,
    secret_uri: str,
    now: datetime,
) -> Instance:
    arm.check_name(name, "backup instance")
    inst = Instance(
        id=str(uuid.uuid4()),
        vault_id=vault_id,
        name=name,
        name_key=name.lower(),
        server_id=server_id,
        database=check_database_name(database),
        datasource_key=datasource_id.lower(),
        policy_id=policy_id,
        secret_uri=secret_uri,
        protection_state=PROTECTION_CONFIGURED,
        created_at=now,
    )
    s.add(inst)
    s.flush()
    return inst
