"""Backup instances: one database on one registered server, protected in one vault."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, Select, String, func, select, true
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.orm.util import identity_key

from pgvault import arm, armstore, policies, secrets, servers
from pgvault.errors import BadRequest, Code, Conflict, UserError
from pgvault.orm import Base, UTCDateTime
from pgvault.policies import Policy
from pgvault.servers import Server
from pgvault.vaults import Vault

PROTECTION_CONFIGURED = "ProtectionConfigured"
PROTECTION_STOPPED = "ProtectionStopped"
BACKUPS_SUSPENDED = "BackupSchedulesSuspended"
SOFT_DELETED = "SoftDeleted"
# Scheduled backups run only in this state; on-demand ones also while suspended.
ADHOC_ALLOWED = (PROTECTION_CONFIGURED, BACKUPS_SUSPENDED)


@dataclass(frozen=True)
class InstanceSpec:
    """What a backup-instance PUT asks for, parsed from Azure's body."""

    database_id: str
    policy_id: str
    secret_uri: str
    friendly_name: str | None = None


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
    # The name a PUT gave it (Azure keeps `friendlyName`); None: shown as `server\database`.
    friendly_name: Mapped[str | None] = mapped_column(String(256))

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


def _named(vault_id: str, name: str, *, deleted: bool = False) -> Select[Instance]:
    """The live instance of a vault with this name (any letter case), or the deleted one."""
    state = Instance.protection_state
    return select(Instance).where(
        Instance.vault_id == vault_id,
        Instance.name_key == name.lower(),
        (state == SOFT_DELETED) if deleted else (state != SOFT_DELETED),
    )


def get(s: Session, vault_id: str, name: str) -> Instance:
    return armstore.one(
        s,
        _named(vault_id, name),
        f"Backup instance {name!r} not found in this vault. "
        "List them with `pgvault instance list`.",
    )


def by_id(s: Session, instance_id: str) -> Instance:
    """The instance a job refers to (a foreign key: it exists)."""
    return s.get_one(Instance, instance_id)


def by_ids(s: Session, instance_ids: Iterable[str]) -> dict[str, Instance]:
    """The instances jobs refer to, by id, in one query (foreign keys: they exist)."""
    return armstore.by_ids(s, Instance, instance_ids)


def related(s: Session, inst: Instance) -> tuple[Vault, Server, Policy]:
    """The vault, server and policy an instance refers to (foreign keys: they exist).

    Server and policy come in one query when neither is in the session yet (a round trip
    fewer for every single-instance read on PostgreSQL metadata)."""
    vault = s.get_one(Vault, inst.vault_id)
    server = s.identity_map.get(identity_key(Server, inst.server_id))
    policy = s.identity_map.get(identity_key(Policy, inst.policy_id))
    if server is None and policy is None:
        both = (
            select(Server, Policy)
            .join(Policy, true())  # two primary-key lookups in one statement
            .where(Server.id == inst.server_id, Policy.id == inst.policy_id)
        )
        server, policy = s.execute(both).one()
    return (
        vault,
        server if server is not None else s.get_one(Server, inst.server_id),
        policy if policy is not None else s.get_one(Policy, inst.policy_id),
    )


def related_many(s: Session, insts: list[Instance]) -> list[tuple[Vault, Server, Policy]]:
    """`related` for many instances in three queries (not three lookups per instance: the
    Backup center lists a thousand of them)."""
    found_vaults = armstore.by_ids(s, Vault, (i.vault_id for i in insts))
    found_servers = armstore.by_ids(s, Server, (i.server_id for i in insts))
    found_policies = armstore.by_ids(s, Policy, (i.policy_id for i in insts))
    return [
        (found_vaults[i.vault_id], found_servers[i.server_id], found_policies[i.policy_id])
        for i in insts
    ]


def find(s: Session, vault_id: str, name: str) -> Instance | None:
    """A live (not soft-deleted) instance by name, if any."""
    return s.scalar(_named(vault_id, name))


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


def list_in_vaults(s: Session, vault_ids: list[str]) -> list[Instance]:
    """Live instances of several vaults in one query (by vault, then name)."""
    return list(
        s.scalars(
            select(Instance)
            .where(Instance.vault_id.in_(vault_ids), Instance.protection_state != SOFT_DELETED)
            .order_by(Instance.vault_id, Instance.name)
        )
    )


def get_deleted(s: Session, vault_id: str, name: str) -> Instance:
    return armstore.one(
        s,
        _named(vault_id, name, deleted=True),
        f"No soft-deleted backup instance {name!r} in this vault.",
    )


def count_in_vault(s: Session, vault_id: str) -> int:
    """Instances of a vault, soft-deleted ones included (a vault must be empty to go)."""
    return s.scalar(select(func.count()).where(Instance.vault_id == vault_id)) or 0


@dataclass(frozen=True)
class VaultContents:
    """What keeps a vault from being deleted: live instances, soft-deleted ones, and when
    the last soft-deleted one is purged for good."""

    live: int
    soft_deleted: int
    last_purge_at: datetime | None


def contents(s: Session, vault_id: str) -> VaultContents:
    rows = list(
        s.execute(
            select(Instance.protection_state, Instance.purge_at).where(
                Instance.vault_id == vault_id
            )
        )
    )
    gone = [purge for state, purge in rows if state == SOFT_DELETED]
    dates = [d for d in gone if d is not None]
    return VaultContents(len(rows) - len(gone), len(gone), max(dates) if dates else None)


def count_using_server(s: Session, server_id: str) -> int:
    """Instances (soft-deleted ones included) that protect a database of this server."""
    return s.scalar(select(func.count()).where(Instance.server_id == server_id)) or 0


def count_using_policy(s: Session, policy_id: str) -> int:
    """Instances (soft-deleted ones included) that this policy governs."""
    return s.scalar(select(func.count()).where(Instance.policy_id == policy_id)) or 0


def live_ids_using_policy(s: Session, vault_id: str, policy_id: str) -> list[str]:
    """Live instances of the vault under this policy: a changed policy re-applies to them."""
    return [i.id for i in list_instances(s, vault_id) if i.policy_id == policy_id]


_TRANSITIONS = {
    "stopProtection": ((PROTECTION_CONFIGURED, BACKUPS_SUSPENDED), PROTECTION_STOPPED),
    "suspendBackups": ((PROTECTION_CONFIGURED,), BACKUPS_SUSPENDED),
    # Azure resumes a stopped or a suspended instance with resumeProtection (az has no
    # other resume command); resumeBackups is the older, suspended-only form.
    "resumeProtection": ((PROTECTION_STOPPED, BACKUPS_SUSPENDED), PROTECTION_CONFIGURED),
    "resumeBackups": ((BACKUPS_SUSPENDED,), PROTECTION_CONFIGURED),
}


def act(inst: Instance, action: str, now: datetime) -> str:
    """Apply a protection action; a resumed instance starts its schedule afresh at `now`."""
    state = transition(inst, action)
    if action.startswith("resume"):
        inst.last_slot_at = now  # no catch-up for the paused time
    return state


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


def check_unprotected(s: Session, server: Server, database: str, fix: str) -> None:
    """A database is protected by one backup instance at most (UserErrorDppDatasourceAlreadyProtected)."""
    other = protecting(s, server.database_id(database))
    if other is not None:
        raise UserError(
            f"Database {database!r} on server {server.name!r} is already protected "
            f"(backup instance {other.name!r}).",
            code=Code.UserErrorDppDatasourceAlreadyProtected,
            recommended_action=fix,
        )


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


def resolve_target(
    s: Session, vault: Vault, database_id: str, policy_id: str, secret_uri: str
) -> tuple[Server, str, Policy]:
    """What an instance PUT names: the server (in the vault's region), database and policy.

    The secret URI is only parsed here; whether it resolves is a backup check.
    """
    rid = arm.parse(database_id)
    database = rid.name_of("databases")
    if not database:
        raise BadRequest(
            f"{database_id!r} is not a database id: expected "
            "'.../Microsoft.DBforPostgreSQL/servers/SERVER/databases/DB'.",
            code=Code.InvalidResourceId,
            target="dataSourceInfo.resourceID",
        )
    check_database_name(database)
    server = servers.get_by_id(s, database_id)
    if server.location != vault.location:
        raise UserError(
            f"Server {server.name!r} is in {server.location}; vault {vault.name!r} protects "
            f"only servers in {vault.location}.",
            code=Code.UserErrorDatasourceRegionMismatch,
            recommended_action="Protect the database from a vault in the server's region.",
        )
    policy = policies.get_by_id(s, vault.id, policy_id)
    secrets.parse_secret_uri(secret_uri)
    return server, database, policy


def protect(
    s: Session,
    vault_id: str,
    name: str,
    server: Server,
    database: str,
    policy_id: str,
    secret_uri: str,
    now: datetime,
    friendly_name: str | None = None,
) -> tuple[Instance, bool, bool]:
    """Protect a database (PUT), or change an instance's policy, secret or friendly name.

    Returns the instance, whether its policy changed (retention is then re-applied) and
    whether it was created (ARM answers 201 then, 200 to an update).
    An instance's database never changes, and a database has one instance at most.
    """
    friendly_name = check_friendly_name(friendly_name)
    datasource = server.database_id(database)
    existing = find(s, vault_id, name)
    if existing is not None:
        check_same_datasource(existing, datasource)
        policy_changed = existing.policy_id != policy_id
        existing.policy_id, existing.secret_uri = policy_id, secret_uri
        if friendly_name is not None:
            existing.friendly_name = friendly_name
        return existing, policy_changed, False
    check_unprotected(s, server, database, "A database can be protected by one vault only.")
    inst = create(s, vault_id, name, server.id, database, datasource, policy_id, secret_uri, now)
    inst.friendly_name = friendly_name
    return inst, False, True


def check_same_datasource(inst: Instance, datasource_id: str) -> None:
    """An instance's database never changes (UserErrorDatasourceCannotChange)."""
    if inst.datasource_key != datasource_id.lower():
        raise Conflict(
            f"Backup instance {inst.name!r} protects another database; a backup "
            "instance's data source cannot change.",
            code=Code.UserErrorDatasourceCannotChange,
        )


def check_friendly_name(name: str | None) -> str | None:
    """A friendly name is free text for people: 1-256 printable characters, or none."""
    if name is None:
        return None
    if not name.strip() or len(name) > 256 or not name.isprintable():
        raise BadRequest(
            "friendlyName must be 1-256 printable characters.",
            code=Code.BadParameter,
            target="properties.friendlyName",
        )
    return name


def display_name(inst: Instance, server_name: str) -> str:
    """The friendly name a PUT gave the instance, else `server\\database` as Azure shows it."""
    return inst.friendly_name or f"{server_name}\\{inst.database}"


def check_deletable(
    inst: Instance,
    vault_name: str,
    *,
    backup_running: bool,
    purge_now: bool,
    immutable: bool,
    unexpired_points: bool,
) -> None:
    """Refuse to delete an instance while it is backed up, or when deleting now (soft delete
    off) on an immutable vault would lose points before they expire."""
    if backup_running:
        raise Conflict(
            "A backup of this instance is running; wait for it to finish.",
            code=Code.UserErrorOperationInProgress,
        )
    if purge_now and immutable and unexpired_points:
        raise Conflict(
            f"Vault {vault_name!r} is immutable: instance {inst.name!r} still has recovery "
            "points that have not expired, and deleting it would lose them early.",
            code=Code.UserErrorOperationBlockedByImmutability,
            recommended_action="Stop protection and retain data instead, or wait until "
            "the points expire.",
        )


def soft_delete(inst: Instance, now: datetime, keep_days: int | None) -> None:
    """Mark an instance deleted; it is purged after `keep_days` (None: soft delete is off,
    so it is due at once)."""
    inst.protection_state = SOFT_DELETED
    inst.deleted_at = now
    inst.purge_at = now + timedelta(days=keep_days or 0)


def undelete(s: Session, vault_id: str, name: str) -> Instance:
    """Bring a soft-deleted instance back, protection stopped and data retained."""
    inst = get_deleted(s, vault_id, name)
    if find(s, vault_id, name) is not None:
        raise Conflict(f"A live instance named {name!r} exists.", code=Code.Conflict)
    inst.protection_state = PROTECTION_STOPPED
    inst.deleted_at = inst.purge_at = None
    return inst
