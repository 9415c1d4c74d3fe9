"""Role-based access: role definitions (actions), role assignments at scopes, and the check.

Shaped like Azure RBAC. An action names a resource type and a verb
(`Microsoft.DataProtection/backupVaults/backupInstances/restore/action`); a role
grants actions and data actions with `*` wildcards, minus its not-actions. An
assignment gives a principal a role at a scope (an ARM id, or `/` for everything)
and is inherited by everything below that scope.
"""

from __future__ import annotations

import fnmatch
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pgvault.errors import BadRequest, Code, Conflict, NotFound
from pgvault.orm import Base, UTCDateTime

DP = "Microsoft.DataProtection/backupVaults"
LOCATIONS = "Microsoft.DataProtection/locations"
#: The secondary-region views (POSTs in Azure's API): what Backup Reader needs to see them.
CRR_VIEWS = (
    "fetchSecondaryRecoveryPoints",
    "fetchCrossRegionRestoreJob",
    "fetchCrossRegionRestoreJobs",
)
BI = f"{DP}/backupInstances"
BLOBS = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs"
GET_SECRET = "Microsoft.KeyVault/vaults/secrets/getSecret/action"
SERVER_READ = "Microsoft.DBforPostgreSQL/servers/read"
BLOB_WRITE = f"{BLOBS}/write"


@dataclass(frozen=True)
class Role:
    """A role definition: what it allows (`actions`, `data_actions`) minus what it does not."""

    id: str
    name: str
    description: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    builtin: bool = True
    assignable_scopes: tuple[str, ...] = ("/",)

    def allows(self, action: str, *, data: bool = False) -> bool:
        granted = self.data_actions if data else self.actions
        if not any(_match(pattern, action) for pattern in granted):
            return False
        return not any(_match(pattern, action) for pattern in self.not_actions)


def _match(pattern: str, action: str) -> bool:
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def _role(name: str, description: str, key: str, **kw: Any) -> Role:
    return Role(
        id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"pgvault-role:{key}")),
        name=name,
        description=description,
        **kw,
    )


BACKUP_OPERATOR_ACTIONS = (
    "*/read",
    f"{BI}/write",
    f"{BI}/backup/action",
    f"{BI}/validateRestore/action",
    f"{BI}/restore/action",
    f"{BI}/rehydrate/action",
    f"{BI}/suspendBackups/action",
    f"{BI}/resumeBackups/action",
    f"{BI}/resumeProtection/action",
    f"{BI}/sync/action",
    f"{BI}/stopProtection/action",
    f"{DP}/validateForBackup/action",
    f"{DP}/backupJobs/cancel/action",
    *(f"{LOCATIONS}/{a}/action" for a in ("validateCrossRegionRestore", "crossRegionRestore")),
    *(f"{LOCATIONS}/{a}/action" for a in CRR_VIEWS),
)

BUILTIN_ROLES: tuple[Role, ...] = (
    _role(
        "Owner",
        "Full access to everything, including granting access. Like Azure's, no data "
        "actions: reading a secret's value takes a data role (Key Vault Secrets User), "
        "which an Owner may grant, audited.",
        "owner",
        actions=("*",),
    ),
    _role(
        "Contributor",
        "Manage everything, but not grant access.",
        "contributor",
        actions=("*",),
        not_actions=(
            "Microsoft.Authorization/*/write",
            "Microsoft.Authorization/*/delete",
            "pgvault/principals/*",
        ),
    ),
    _role("Reader", "View everything, change nothing.", "reader", actions=("*/read",)),
    _role(
        "Backup Contributor",
        "Manage backups (vaults, policies, instances, restores) but not delete vaults or "
        "grant access.",
        "backup-contributor",
        actions=("Microsoft.DataProtection/*", "*/read"),
        not_actions=(f"{DP}/delete",),
    ),
    _role(
        "Backup Operator",
        "Back up and restore, enable protection; not remove backups or manage policies.",
        "backup-operator",
        actions=BACKUP_OPERATOR_ACTIONS,
    ),
    _role(
        "Backup Reader",
        "View and monitor backups only.",
        "backup-reader",
        actions=(
            "Microsoft.DataProtection/*/read",
            *(f"{LOCATIONS}/{a}/action" for a in CRR_VIEWS),
            "Microsoft.Resources/*/read",
            "Microsoft.Insights/*/read",
        ),
    ),
    _role(
        "Storage Blob Data Contributor",
        "Read, write and delete blobs in containers.",
        "storage-blob-data-contributor",
        actions=("Microsoft.Storage/storageAccounts/blobServices/containers/*",),
        data_actions=(f"{BLOBS}/*",),
    ),
    _role(
        "Key Vault Secrets User",
        "Read secret contents.",
        "key-vault-secrets-user",
        data_actions=(GET_SECRET, "Microsoft.KeyVault/vaults/secrets/readMetadata/action"),
    ),
    _role(
        "PostgreSQL Backup Target",
        "What a vault's identity needs on a PostgreSQL server it backs up or restores to "
        "(Reader on the server is accepted too).",
        "postgresql-backup-target",
        actions=(SERVER_READ, "Microsoft.DBforPostgreSQL/servers/databases/*"),
    ),
)


class CustomRole(Base):
    __tablename__ = "role_definitions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(String(1000), default="")
    permissions: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    def as_role(self) -> Role:
        p = self.permissions
        return Role(
            self.id,
            self.name,
            self.description,
            tuple(p.get("actions", [])),
            tuple(p.get("notActions", [])),
            tuple(p.get("dataActions", [])),
            builtin=False,
        )


class Assignment(Base):
    __tablename__ = "role_assignments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    scope: Mapped[str] = mapped_column(String(500))
    scope_key: Mapped[str] = mapped_column(String(500), index=True)
    role_id: Mapped[str] = mapped_column(String(36))
    principal_id: Mapped[str] = mapped_column(String(36), index=True)
    principal_type: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


def normalize_scope(scope: str) -> str:
    """Scopes compare case-insensitively, without trailing slashes; `/` is the root."""
    scope = "/" + str(scope or "").strip().strip("/")
    return scope


def covers(assignment_scope: str, resource: str) -> bool:
    """Is `resource` at or below `assignment_scope`?"""
    a, r = normalize_scope(assignment_scope).lower(), normalize_scope(resource).lower()
    return a == "/" or r == a or r.startswith(a + "/")


def all_roles(s: Session) -> list[Role]:
    return [*BUILTIN_ROLES, *(r.as_role() for r in s.scalars(select(CustomRole)))]


def find_role(s: Session, name_or_id: str) -> Role:
    """A role by display name (case-insensitive), id, or full roleDefinitions id."""
    key = str(name_or_id).rstrip("/").rsplit("/", 1)[-1].lower()
    for role in all_roles(s):
        if role.name.lower() == str(name_or_id).lower() or role.id == key:
            return role
    raise NotFound(
        f"Role {name_or_id!r} does not exist. List roles with `pgvault role definition list`.",
        code=Code.RoleDefinitionDoesNotExist,
    )


def put_custom_role(
    s: Session,
    role_id: str,
    name: str,
    description: str,
    permissions: dict[str, Any],
    now: datetime,
) -> Role:
    if any(r.name.lower() == name.lower() for r in BUILTIN_ROLES):
        raise Conflict(f"{name!r} is a built-in role.", code=Code.RoleDefinitionExists)
    if any(r.id == role_id.lower() for r in BUILTIN_ROLES):
        raise Conflict(
            f"{role_id!r} is the id of a built-in role; built-in roles cannot be changed.",
            code=Code.RoleDefinitionExists,
        )
    same_name = s.scalar(select(CustomRole).where(func.lower(CustomRole.name) == name.lower()))
    if same_name is not None and same_name.id != role_id:
        raise Conflict(
            f"A custom role named {name!r} already exists (id {same_name.id}).",
            code=Code.RoleDefinitionWithSameNameExists,
        )
    if not name.strip() or len(name) > 128 or len(description) > 1000:
        raise BadRequest(
            "roleName must be 1 to 128 characters, description at most 1000.",
            code=Code.BadRequest,
        )
    for key in ("actions", "notActions", "dataActions"):
        value = permissions.get(key, [])
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            raise BadRequest(f"permissions.{key} must be a list of strings.", code=Code.BadRequest)
    row = s.get(CustomRole, role_id) or CustomRole(id=role_id, created_at=now)
    row.name, row.description, row.permissions = name, description, permissions
    s.add(row)
    s.flush()
    return row.as_role()


def assign(
    s: Session,
    *,
    scope: str,
    role: Role,
    principal_id: str,
    principal_type: str,
    created_by: str | None,
    now: datetime,
    assignment_id: str | None = None,
) -> Assignment:
    """Create an assignment (idempotent for the same principal, role and scope)."""
    scope = normalize_scope(scope)
    taken = s.get(Assignment, assignment_id) if assignment_id else None
    if taken is not None:
        if (taken.scope_key, taken.role_id, taken.principal_id) != (
            scope.lower(),
            role.id,
            principal_id,
        ):
            raise Conflict(
                "A role assignment with this id exists with another scope, role or principal; "
                "assignments cannot be changed, delete it first.",
                code=Code.RoleAssignmentUpdateNotPermitted,
            )
        return taken
    existing = s.scalar(
        select(Assignment).where(
            Assignment.scope_key == scope.lower(),
            Assignment.role_id == role.id,
            Assignment.principal_id == principal_id,
        )
    )
    if existing is not None:
        if assignment_id and existing.id != assignment_id:
            raise Conflict("The role assignment already exists.", code=Code.RoleAssignmentExists)
        return existing
    row = Assignment(
        id=assignment_id or str(uuid.uuid4()),
        scope=scope,
        scope_key=scope.lower(),
        role_id=role.id,
        principal_id=principal_id,
        principal_type=principal_type,
        created_by=created_by,
        created_at=now,
    )
    s.add(row)
    s.flush()
    return row


def assignments_for(s: Session, principal_id: str) -> list[Assignment]:
    return list(s.scalars(select(Assignment).where(Assignment.principal_id == principal_id)))


def remove_assignments_of(s: Session, principal_id: str) -> None:
    """Delete every role assignment of a principal that is being deleted."""
    for assignment in assignments_for(s, principal_id):
        s.delete(assignment)


def list_assignments(
    s: Session,
    scope: str | None = None,
    principal_id: str | None = None,
    at_scope_only: bool = False,
) -> list[Assignment]:
    """Assignments at or above `scope` (those that apply to it), or exactly at it."""
    q = select(Assignment)
    if principal_id:
        q = q.where(Assignment.principal_id == principal_id)
    rows = list(s.scalars(q.order_by(Assignment.created_at)))
    if scope is None:
        return rows
    if at_scope_only:
        return [a for a in rows if a.scope_key == normalize_scope(scope).lower()]
    return [a for a in rows if covers(a.scope, scope) or covers(scope, a.scope)]


def get_assignment(s: Session, assignment_id: str) -> Assignment:
    row = s.get(Assignment, assignment_id)
    if row is None:
        raise NotFound(
            f"Role assignment {assignment_id!r} not found.", code=Code.RoleAssignmentNotFound
        )
    return row


def delete_assignment(s: Session, assignment_id: str) -> Assignment:
    """Delete a role assignment; returns it (the API echoes the deleted assignment)."""
    row = get_assignment(s, assignment_id)
    s.delete(row)
    return row


def is_allowed(
    s: Session, principal_id: str, action: str, scope: str, *, data: bool = False
) -> bool:
    """Does any of the principal's assignments covering `scope` grant `action`?"""
    roles = {r.id: r for r in all_roles(s)}
    for a in assignments_for(s, principal_id):
        role = roles.get(a.role_id)
        if role is not None and covers(a.scope, scope) and role.allows(action, data=data):
            return True
    return False


@dataclass
class Grant:
    """A missing grant, with the command that fixes it."""

    role: str
    scope: str
    assignee: str
    action: str
    data: bool = field(default=False)

    def command(self) -> str:
        return (
            f"pgvault role assignment create --assignee {self.assignee} "
            f'--role "{self.role}" --scope {self.scope}'
        )
