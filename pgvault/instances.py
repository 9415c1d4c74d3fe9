"""Backup instances: one database on one registered server, protected in one vault."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pgvault import arm
from pgvault.db import Base, UTCDateTime
from pgvault.errors import BadRequest, Code, Conflict, NotFound

PROTECTION_CONFIGURED = "ProtectionConfigured"
PROTECTION_STOPPED = "ProtectionStopped"
BACKUPS_SUSPENDED = "BackupSchedulesSuspended"
SOFT_DELETED = "SoftDeleted"
# Scheduled backups run only in this state; on-demand ones also while suspended.
ADHOC_ALLOWED = (PROTECTION_CONFIGURED, BACKUPS_SUSPENDED)


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
    last_slot_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    purge_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def soft_deleted(self) -> bool:
        return self.protection_state == SOFT_DELETED


def check_database_name(name: str) -> str:
    """PostgreSQL database names: 1-63 bytes, no NUL; anything else is refused at the edge."""
    if not isinstance(name, str) or not name or len(name.encode()) > 63 or "\x00" in name:
        raise BadRequest(
            f"Invalid database name {name!r}: use 1-63 bytes.",
            code=Code.BadParameter,
            target="database",
        )
    return name


def get(s: Session, vault_id: str, name: str) -> Instance:
    inst = s.scalar(
        select(Instance).where(
            Instance.vault_id == vault_id,
            Instance.name_key == name.lower(),
            Instance.protection_state != SOFT_DELETED,
        )
    )
    if inst is None:
        raise NotFound(
            f"Backup instance {name!r} not found in this vault. "
            "List them with `pgvault instance list`.",
            code=Code.ResourceNotFound,
        )
    return inst


def find(s: Session, vault_id: str, name: str) -> Instance | None:
    """A live (not soft-deleted) instance by name, if any."""
    return s.scalar(
        select(Instance).where(
            Instance.vault_id == vault_id,
            Instance.name_key == name.lower(),
            Instance.protection_state != SOFT_DELETED,
        )
    )


def list_instances(s: Session, vault_id: str, *, deleted: bool = False) -> list[Instance]:
    """Live instances, or (deleted=True) the soft-deleted ones."""
    state = Instance.protection_state
    return list(
        s.scalars(
            select(Instance)
            .where(
                Instance.vault_id == vault_id,
                (state == SOFT_DELETED) if deleted else (state != SOFT_DELETED),
            )
            .order_by(Instance.name)
        )
    )


def get_deleted(s: Session, vault_id: str, name: str) -> Instance:
    inst = s.scalar(
        select(Instance).where(
            Instance.vault_id == vault_id,
            Instance.name_key == name.lower(),
            Instance.protection_state == SOFT_DELETED,
        )
    )
    if inst is None:
        raise NotFound(
            f"No soft-deleted backup instance {name!r} in this vault.", code=Code.ResourceNotFound
        )
    return inst


_TRANSITIONS = {
    "stopProtection": ((PROTECTION_CONFIGURED, BACKUPS_SUSPENDED), PROTECTION_STOPPED),
    "suspendBackups": ((PROTECTION_CONFIGURED,), BACKUPS_SUSPENDED),
    "resumeProtection": ((PROTECTION_STOPPED,), PROTECTION_CONFIGURED),
    "resumeBackups": ((BACKUPS_SUSPENDED,), PROTECTION_CONFIGURED),
}


def transition(inst: Instance, action: str) -> str:
    """Apply a protection action (stopProtection, suspendBackups, resume...); returns the state."""
    allowed, target = _TRANSITIONS[action]
    if inst.protection_state == target:
        return target
    if inst.protection_state not in allowed:
        raise Conflict(
            f"Cannot {action} an instance in state {inst.protection_state}.",
            code=Code.UserErrorInvalidProtectionState,
            recommended_action=f"{action} applies to instances in state {' or '.join(allowed)}.",
        )
    inst.protection_state = target
    return target


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
