"""Role semantics, scopes and inheritance, custom roles, and the action + scope of every route.

The role table is pgvault's contract with its users (what "Backup Operator" may do), so it
is spelled out here action by action; the HTTP-level matrix is in test_rbac_matrix.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from pgvault import rbac
from pgvault.api.actions import OPEN_ACTIONS, requested
from pgvault.config import Settings
from pgvault.context import Context
from pgvault.errors import BadRequest, Conflict, NotFound

NOW = datetime(2026, 1, 1, tzinfo=UTC)

DPV = "Microsoft.DataProtection/backupVaults"
BI = f"{DPV}/backupInstances"
AUTHZ = "Microsoft.Authorization"
SERVERS = "Microsoft.DBforPostgreSQL/servers"
SECRETS = "Microsoft.KeyVault/vaults/secrets"
CONTAINERS = "Microsoft.Storage/storageAccounts/blobServices/containers"
BLOBS = f"{CONTAINERS}/blobs"
GET_SECRET = "Microsoft.KeyVault/vaults/secrets/getSecret/action"


def role(name: str) -> rbac.Role:
    return next(r for r in rbac.BUILTIN_ROLES if r.name == name)


# -- built-in roles: (role, action) -> allowed as a control-plane action ---------------------

# Every built-in role against the same list of actions, with the expected answer written out.
ACTIONS = [
    f"{DPV}/read",
    f"{DPV}/write",
    f"{DPV}/delete",
    f"{DPV}/backupPolicies/read",
    f"{DPV}/backupPolicies/write",
    f"{DPV}/backupPolicies/delete",
    f"{DPV}/validateForBackup/action",
    f"{BI}/read",
    f"{BI}/write",
    f"{BI}/delete",
    f"{BI}/backup/action",
    f"{BI}/validateRestore/action",
    f"{BI}/restore/action",
    f"{BI}/stopProtection/action",
    f"{BI}/rehydrate/action",
    f"{BI}/suspendBackups/action",
    f"{BI}/resumeBackups/action",
    f"{BI}/resumeProtection/action",
    f"{DPV}/deletedBackupInstances/read",
    f"{DPV}/deletedBackupInstances/undelete/action",
    f"{BI}/recoveryPoints/read",
    f"{DPV}/backupJobs/read",
    f"{DPV}/operationStatus/read",
    f"{SERVERS}/read",
    f"{SERVERS}/write",
    f"{SERVERS}/delete",
    f"{SERVERS}/databases/write",
    "Microsoft.KeyVault/vaults/write",
    f"{SECRETS}/read",
    f"{SECRETS}/write",
    "Microsoft.Storage/storageAccounts/write",
    f"{CONTAINERS}/read",
    f"{CONTAINERS}/write",
    f"{AUTHZ}/roleAssignments/read",
    f"{AUTHZ}/roleAssignments/write",
    f"{AUTHZ}/roleAssignments/delete",
    f"{AUTHZ}/roleDefinitions/write",
    "pgvault/principals/read",
    "pgvault/principals/write",
    "pgvault/principals/delete",
    "Microsoft.Resources/subscriptions/resourceGroups/read",
    "Microsoft.Resources/subscriptions/resourceGroups/write",
    "Microsoft.Insights/eventtypes/values/read",
]

# The allowed subset of ACTIONS for each role; everything else in ACTIONS is denied.
_READS = {a for a in ACTIONS if a.endswith("/read")}
_DP = {a for a in ACTIONS if a.startswith("Microsoft.DataProtection/")}
ALLOWED: dict[str, set[str]] = {
    "Owner": set(ACTIONS),
    "Contributor": set(ACTIONS)
    - {
        f"{AUTHZ}/roleAssignments/write",
        f"{AUTHZ}/roleAssignments/delete",
        f"{AUTHZ}/roleDefinitions/write",
        "pgvault/principals/read",
        "pgvault/principals/write",
        "pgvault/principals/delete",
    },
    "Reader": _READS,
    "Backup Contributor": (_DP | _READS) - {f"{DPV}/delete"},
    "Backup Operator": _READS
    | {
        f"{BI}/write",
        f"{BI}/backup/action",
        f"{BI}/validateRestore/action",
        f"{BI}/restore/action",
        f"{BI}/suspendBackups/action",
        f"{BI}/resumeBackups/action",
        f"{BI}/resumeProtection/action",
        f"{BI}/stopProtection/action",
        f"{BI}/rehydrate/action",
        f"{DPV}/validateForBackup/action",
    },
    "Backup Reader": {a for a in _READS if a.startswith("Microsoft.DataProtection/")}
    | {
        "Microsoft.Resources/subscriptions/resourceGroups/read",
        "Microsoft.Insights/eventtypes/values/read",
    },
    "Storage Blob Data Contributor": {f"{CONTAINERS}/read", f"{CONTAINERS}/write"},
    "Key Vault Secrets User": set(),
    "PostgreSQL Backup Target": {f"{SERVERS}/read", f"{SERVERS}/databases/write"},
}


def test_every_builtin_role_is_in_the_table() -> None:
    assert {r.name for r in rbac.BUILTIN_ROLES} == set(ALLOWED)


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("role_name", list(ALLOWED))
def test_builtin_role_actions(role_name: str, action: str) -> None:
    assert role(role_name).allows(action) is (action in ALLOWED[role_name])


# Data actions: what a role grants on the data plane (blob contents, secret values).
DATA_ACTIONS = [f"{BLOBS}/read", f"{BLOBS}/write", f"{BLOBS}/delete", GET_SECRET]
DATA_ALLOWED: dict[str, set[str]] = {
    "Owner": set(),  # as in Azure: control plane only; an Owner grants itself a data role
    "Contributor": set(),
    "Reader": set(),
    "Backup Contributor": set(),
    "Backup Operator": set(),
    "Backup Reader": set(),
    "Storage Blob Data Contributor": {f"{BLOBS}/read", f"{BLOBS}/write", f"{BLOBS}/delete"},
    "Key Vault Secrets User": {GET_SECRET},
    "PostgreSQL Backup Target": set(),
}


@pytest.mark.parametrize("action", DATA_ACTIONS)
@pytest.mark.parametrize("role_name", list(DATA_ALLOWED))
def test_builtin_role_data_actions(role_name: str, action: str) -> None:
    assert role(role_name).allows(action, data=True) is (action in DATA_ALLOWED[role_name])


def test_data_actions_are_not_actions() -> None:
    """A data action grants nothing on the control plane, and the reverse."""
    secrets_user = role("Key Vault Secrets User")
    assert secrets_user.allows(GET_SECRET, data=True)
    assert not secrets_user.allows(GET_SECRET)
    blob = role("Storage Blob Data Contributor")
    assert blob.allows(f"{BLOBS}/write", data=True)
    assert not blob.allows("Microsoft.Storage/storageAccounts/write")
    assert not blob.allows("Microsoft.Storage/storageAccounts/read", data=True)
    # Contributor's `*` is an action wildcard: no data access at all.
    contributor = role("Contributor")
    assert contributor.allows(f"{BLOBS}/write")
    assert not contributor.allows(f"{BLOBS}/write", data=True)
    assert not contributor.allows(GET_SECRET, data=True)


@pytest.mark.parametrize(
    ("role_name", "action", "allowed"),
    [
        ("Reader", "microsoft.dataprotection/BACKUPVAULTS/read", True),
        ("Reader", "MICROSOFT.DATAPROTECTION/BACKUPVAULTS/READ", True),
        ("Reader", "Microsoft.DataProtection/backupVaults/WRITE", False),
        ("Contributor", "MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE", False),
        ("Contributor", "microsoft.authorization/roleassignments/read", True),
        ("Contributor", "PGVAULT/PRINCIPALS/WRITE", False),
        ("Backup Contributor", "microsoft.dataprotection/backupvaults/DELETE", False),
        ("Backup Contributor", "MICROSOFT.DATAPROTECTION/backupvaults/WRITE", True),
        (
            "Backup Operator",
            "microsoft.dataprotection/backupvaults/backupinstances/restore/ACTION",
            True,
        ),
        ("Backup Operator", "microsoft.dataprotection/backupvaults/backupinstances/DELETE", False),
        ("Key Vault Secrets User", GET_SECRET.upper(), False),
    ],
)
def test_actions_compare_case_insensitively(role_name: str, action: str, allowed: bool) -> None:
    assert role(role_name).allows(action) is allowed


@pytest.mark.parametrize(
    ("pattern", "action", "matches"),
    [
        ("*", "anything/at/all", True),
        (
            "*/read",
            "Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints/read",
            True,
        ),
        ("*/read", "Microsoft.DataProtection/backupVaults/write", False),
        ("*/read", "Microsoft.X/things/readMetadata/action", False),
        ("*/read", "Microsoft.X/things/reader", False),
        ("Microsoft.DataProtection/*", "Microsoft.DataProtection/backupVaults/delete", True),
        ("Microsoft.DataProtection/*", "Microsoft.DataProtectionX/backupVaults/read", False),
        ("Microsoft.DataProtection/*", "Microsoft.DBforPostgreSQL/servers/read", False),
        ("Microsoft.DataProtection/*/read", "Microsoft.DataProtection/backupVaults/read", True),
        ("Microsoft.DataProtection/*/read", "Microsoft.DataProtection/backupVaults/write", False),
        ("Microsoft.Storage/*/write", "Microsoft.Storage/storageAccounts/write", True),
        (
            "Microsoft.Storage/storageAccounts/write",
            "Microsoft.Storage/storageAccounts/write",
            True,
        ),
        (
            "Microsoft.Storage/storageAccounts/write",
            "Microsoft.Storage/storageAccounts/read",
            False,
        ),
    ],
)
def test_wildcards(pattern: str, action: str, matches: bool) -> None:
    custom = rbac.Role("id", "custom", "", actions=(pattern,), builtin=False)
    assert custom.allows(action) is matches


def test_not_actions_subtract_from_actions() -> None:
    custom = rbac.Role(
        "id",
        "custom",
        "",
        actions=("Microsoft.DataProtection/*",),
        not_actions=("*/delete", "Microsoft.DataProtection/backupVaults/backupInstances/*"),
        builtin=False,
    )
    assert custom.allows(f"{DPV}/write")
    assert custom.allows(f"{DPV}/backupPolicies/write")
    assert not custom.allows(f"{DPV}/delete")
    assert not custom.allows(f"{DPV}/backupPolicies/delete")
    assert not custom.allows(f"{BI}/write")
    assert not custom.allows(f"{BI}/restore/action")
    # notActions never grant anything on their own
    only_not = rbac.Role("id", "n", "", not_actions=("*/delete",), builtin=False)
    assert not only_not.allows(f"{DPV}/read")


def test_role_without_actions_allows_nothing() -> None:
    empty = rbac.Role("id", "empty", "", builtin=False)
    assert not empty.allows("*")
    assert not empty.allows(f"{DPV}/read")
    assert not empty.allows(GET_SECRET, data=True)


def test_builtin_role_ids_are_stable_guids() -> None:
    ids = [r.id for r in rbac.BUILTIN_ROLES]
    assert len(set(ids)) == len(ids)
    for r in rbac.BUILTIN_ROLES:
        assert str(uuid.UUID(r.id)) == r.id
        assert r.builtin
        assert r.assignable_scopes == ("/",)
    # derived from the role key: the same on every installation
    assert role("Owner").id == str(uuid.uuid5(uuid.NAMESPACE_URL, "pgvault-role:owner"))


# -- scopes ----------------------------------------------------------------------------------

SUB = "/subscriptions/11111111-2222-3333-4444-555555555555"
RG_A = f"{SUB}/resourceGroups/a"
VAULT = f"{RG_A}/providers/Microsoft.DataProtection/backupVaults/v1"


@pytest.mark.parametrize(
    ("scope", "normalized"),
    [
        ("/", "/"),
        ("", "/"),
        ("//", "/"),
        (f"{RG_A}/", RG_A),
        (RG_A[1:], RG_A),
        (f"  {RG_A}  ", RG_A),
    ],
)
def test_normalize_scope(scope: str, normalized: str) -> None:
    assert rbac.normalize_scope(scope) == normalized


@pytest.mark.parametrize(
    ("assignment", "resource", "covered"),
    [
        ("/", "/", True),
        ("/", VAULT, True),
        ("", VAULT, True),
        (SUB, RG_A, True),
        (SUB, VAULT, True),
        (RG_A, RG_A, True),
        (RG_A, f"{RG_A}/", True),
        (f"{RG_A}/", RG_A, True),
        (RG_A, VAULT, True),
        (RG_A, f"{VAULT}/backupInstances/bi1", True),
        (VAULT, f"{VAULT}/backupPolicies/p", True),
        # case-insensitive, as ARM ids are
        (RG_A.upper(), VAULT, True),
        (RG_A, VAULT.upper(), True),
        # a child never covers its parent
        (VAULT, RG_A, False),
        (RG_A, SUB, False),
        (RG_A, "/", False),
        # siblings that share a prefix are not children
        (f"{SUB}/resourceGroups/a", f"{SUB}/resourceGroups/ab", False),
        (f"{SUB}/resourceGroups/a", f"{SUB}/resourceGroups/ab/providers/x/y/z", False),
        ("/a/b", "/a/bc", False),
        ("/a/bc", "/a/b", False),
        ("/a/b", "/a/b/c", True),
        (VAULT, f"{VAULT}2", False),
        (VAULT, f"{VAULT}-other/backupPolicies/p", False),
        (SUB, "/subscriptions/11111111-2222-3333-4444-5555555555556", False),
        # siblings
        (f"{SUB}/resourceGroups/a", f"{SUB}/resourceGroups/b", False),
    ],
)
def test_covers(assignment: str, resource: str, covered: bool) -> None:
    assert rbac.covers(assignment, resource) is covered


# -- assignments in the metadata database ----------------------------------------------------


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Context]:
    home: Path = tmp_path_factory.mktemp("rbac")
    context = Context.create(Settings(home=home, datastore_url="memory://"))
    context.migrate()
    yield context
    context.db.dispose()


@pytest.fixture
def s(ctx: Context) -> Iterator[Session]:
    """A session whose changes are thrown away after the test."""
    with Session(ctx.db.engine) as session:
        yield session
        session.rollback()


def _new_principal() -> str:
    return str(uuid.uuid4())


def _assign(s: Session, scope: str, role_name: str, principal: str) -> rbac.Assignment:
    return rbac.assign(
        s,
        scope=scope,
        role=rbac.find_role(s, role_name),
        principal_id=principal,
        principal_type="ServicePrincipal",
        created_by=None,
        now=NOW,
    )


def test_assignment_is_inherited_downward_only(s: Session) -> None:
    p = _new_principal()
    _assign(s, RG_A, "Reader", p)
    read = f"{DPV}/read"
    assert rbac.is_allowed(s, p, read, RG_A)
    assert rbac.is_allowed(s, p, read, VAULT)
    assert rbac.is_allowed(s, p, f"{BI}/read", f"{VAULT}/backupInstances/bi")
    assert not rbac.is_allowed(s, p, read, SUB)
    assert not rbac.is_allowed(s, p, read, "/")
    assert not rbac.is_allowed(s, p, read, f"{SUB}/resourceGroups/ab")
    assert not rbac.is_allowed(s, p, read, f"{SUB}/resourceGroups/b/providers/x/y/z")
    # the role still limits what is allowed where it applies
    assert not rbac.is_allowed(s, p, f"{DPV}/write", VAULT)


def test_root_assignment_covers_everything(s: Session) -> None:
    p = _new_principal()
    _assign(s, "/", "Backup Operator", p)
    for scope in ("/", SUB, RG_A, VAULT, "/subscriptions/other/resourceGroups/x"):
        assert rbac.is_allowed(s, p, f"{BI}/restore/action", scope)
        assert not rbac.is_allowed(s, p, f"{BI}/delete", scope)


def test_roles_add_up_across_assignments(s: Session) -> None:
    """Reader at the subscription plus Backup Operator on one vault: both apply there."""
    p = _new_principal()
    _assign(s, SUB, "Reader", p)
    _assign(s, VAULT, "Backup Operator", p)
    other_vault = f"{RG_A}/providers/Microsoft.DataProtection/backupVaults/v2"
    assert rbac.is_allowed(s, p, f"{DPV}/read", other_vault)
    assert rbac.is_allowed(s, p, f"{BI}/backup/action", f"{VAULT}/backupInstances/bi")
    assert not rbac.is_allowed(s, p, f"{BI}/backup/action", f"{other_vault}/backupInstances/bi")


def test_other_principals_assignments_do_not_apply(s: Session) -> None:
    p, q = _new_principal(), _new_principal()
    _assign(s, "/", "Owner", p)
    assert rbac.is_allowed(s, p, "anything/write", VAULT)
    assert not rbac.is_allowed(s, q, f"{DPV}/read", VAULT)


def test_no_assignment_no_access(s: Session) -> None:
    assert not rbac.is_allowed(s, _new_principal(), f"{DPV}/read", "/")


def test_data_check_uses_data_actions(s: Session) -> None:
    p = _new_principal()
    _assign(s, RG_A, "Key Vault Secrets User", p)
    secret = f"{RG_A}/providers/Microsoft.KeyVault/vaults/kv/secrets/s"
    assert rbac.is_allowed(s, p, GET_SECRET, secret, data=True)
    assert not rbac.is_allowed(s, p, GET_SECRET, secret)
    assert not rbac.is_allowed(s, p, f"{SECRETS}/read", secret)


def test_assign_is_idempotent_and_normalizes_the_scope(s: Session) -> None:
    p = _new_principal()
    first = _assign(s, f"{RG_A}/", "Reader", p)
    assert first.scope == RG_A
    assert first.scope_key == RG_A.lower()
    again = _assign(s, RG_A.upper(), "Reader", p)
    assert again.id == first.id
    assert len(rbac.assignments_for(s, p)) == 1
    _assign(s, RG_A, "Backup Reader", p)
    assert len(rbac.assignments_for(s, p)) == 2


def test_assign_with_an_explicit_id(s: Session) -> None:
    p = _new_principal()
    reader = rbac.find_role(s, "Reader")
    aid = str(uuid.uuid4())
    kw = {"principal_type": "User", "created_by": None, "now": NOW}
    row = rbac.assign(s, scope=RG_A, role=reader, principal_id=p, assignment_id=aid, **kw)
    assert row.id == aid
    # same id, same content: the same assignment
    same = rbac.assign(s, scope=RG_A, role=reader, principal_id=p, assignment_id=aid, **kw)
    assert same.id == aid
    # the same principal, role and scope under another id
    with pytest.raises(Conflict) as exc:
        rbac.assign(
            s, scope=RG_A, role=reader, principal_id=p, assignment_id=str(uuid.uuid4()), **kw
        )
    assert exc.value.code == "RoleAssignmentExists"


def test_assign_cannot_reuse_an_id_for_something_else(s: Session) -> None:
    """An id names one (principal, role, scope); a PUT elsewhere with it is a 409, not a crash."""
    p = _new_principal()
    reader = rbac.find_role(s, "Reader")
    kw = {"principal_type": "User", "created_by": None, "now": NOW}
    aid = str(uuid.uuid4())
    rbac.assign(s, scope=RG_A, role=reader, principal_id=p, assignment_id=aid, **kw)
    for change in (
        {"scope": SUB, "role": reader, "principal_id": p},
        {"scope": RG_A, "role": rbac.find_role(s, "Owner"), "principal_id": p},
        {"scope": RG_A, "role": reader, "principal_id": _new_principal()},
    ):
        with pytest.raises(Conflict) as exc:
            rbac.assign(s, assignment_id=aid, **change, **kw)
        assert exc.value.code == "RoleAssignmentUpdateNotPermitted"
    assert [a.id for a in rbac.assignments_for(s, p)] == [aid]


def test_list_assignments_at_above_and_below(s: Session) -> None:
    p = _new_principal()
    at_root = _assign(s, "/", "Reader", p)
    at_rg = _assign(s, RG_A, "Backup Reader", p)
    at_vault = _assign(s, VAULT, "Backup Operator", p)
    elsewhere = _assign(s, f"{SUB}/resourceGroups/ab", "Backup Operator", p)

    def ids(rows: list[rbac.Assignment]) -> set[str]:
        return {a.id for a in rows}

    # those that apply at the RG (above it) and those inside it (below)
    assert ids(rbac.list_assignments(s, RG_A, p)) == {at_root.id, at_rg.id, at_vault.id}
    assert ids(rbac.list_assignments(s, RG_A, p, at_scope_only=True)) == {at_rg.id}
    assert ids(rbac.list_assignments(s, RG_A.upper() + "/", p, at_scope_only=True)) == {at_rg.id}
    assert ids(rbac.list_assignments(s, "/", p, at_scope_only=True)) == {at_root.id}
    assert ids(rbac.list_assignments(s, None, p)) == {
        at_root.id,
        at_rg.id,
        at_vault.id,
        elsewhere.id,
    }
    assert elsewhere.id not in ids(rbac.list_assignments(s, RG_A, None))


def test_get_assignment(s: Session) -> None:
    row = _assign(s, RG_A, "Reader", _new_principal())
    assert rbac.get_assignment(s, row.id).id == row.id
    with pytest.raises(NotFound) as exc:
        rbac.get_assignment(s, str(uuid.uuid4()))
    assert exc.value.code == "RoleAssignmentNotFound"


# -- finding roles and custom roles ----------------------------------------------------------


def test_find_role_by_name_id_or_full_id(s: Session) -> None:
    owner = role("Owner")
    assert rbac.find_role(s, "Owner") == owner
    assert rbac.find_role(s, "owner") == owner
    assert rbac.find_role(s, "BACKUP OPERATOR") == role("Backup Operator")
    assert rbac.find_role(s, owner.id) == owner
    assert rbac.find_role(s, owner.id.upper()) == owner
    assert rbac.find_role(s, f"/providers/Microsoft.Authorization/roleDefinitions/{owner.id}")
    full = f"{RG_A}/providers/Microsoft.Authorization/roleDefinitions/{owner.id}/"
    assert rbac.find_role(s, full) == owner
    with pytest.raises(NotFound) as exc:
        rbac.find_role(s, "Superuser")
    assert exc.value.code == "RoleDefinitionDoesNotExist"


def test_custom_role_grants_its_actions(s: Session) -> None:
    rid = str(uuid.uuid4())
    custom = rbac.put_custom_role(
        s,
        rid,
        "Policy Editor",
        "Edit policies only",
        {
            "actions": [f"{DPV}/backupPolicies/*", f"{DPV}/read"],
            "notActions": [f"{DPV}/backupPolicies/delete"],
            "dataActions": [],
        },
        NOW,
    )
    assert not custom.builtin
    assert rbac.find_role(s, "policy editor").id == rid
    assert rbac.find_role(s, rid).name == "Policy Editor"
    assert rid in {r.id for r in rbac.all_roles(s)}

    p = _new_principal()
    _assign(s, RG_A, "Policy Editor", p)
    policy = f"{VAULT}/backupPolicies/p"
    assert rbac.is_allowed(s, p, f"{DPV}/backupPolicies/write", policy)
    assert rbac.is_allowed(s, p, f"{DPV}/read", VAULT)
    assert not rbac.is_allowed(s, p, f"{DPV}/backupPolicies/delete", policy)
    assert not rbac.is_allowed(s, p, f"{DPV}/write", VAULT)
    assert not rbac.is_allowed(s, p, f"{DPV}/backupPolicies/write", f"{SUB}/resourceGroups/b")

    # a PUT of the same id replaces the permissions, and assignments follow
    rbac.put_custom_role(s, rid, "Policy Editor", "", {"actions": [f"{DPV}/read"]}, NOW)
    assert not rbac.is_allowed(s, p, f"{DPV}/backupPolicies/write", policy)
    assert rbac.is_allowed(s, p, f"{DPV}/read", VAULT)


@pytest.mark.parametrize("name", ["Owner", "owner", "READER", "Backup Operator"])
def test_custom_role_cannot_take_a_builtin_name(s: Session, name: str) -> None:
    with pytest.raises(Conflict) as exc:
        rbac.put_custom_role(s, str(uuid.uuid4()), name, "", {"actions": ["*"]}, NOW)
    assert exc.value.code == "RoleDefinitionExists"


@pytest.mark.parametrize("builtin", ["Owner", "Reader", "Backup Operator"])
def test_custom_role_cannot_replace_a_builtin_role_by_id(s: Session, builtin: str) -> None:
    """Otherwise a PUT with the Reader's id and `*` would make every Reader an Owner."""
    target = role(builtin)
    for rid in (target.id, target.id.upper()):
        with pytest.raises(Conflict):
            rbac.put_custom_role(s, rid, "Sneaky", "", {"actions": ["*"]}, NOW)
    p = _new_principal()
    _assign(s, "/", builtin, p)
    assert rbac.find_role(s, target.id) == target
    assert rbac.is_allowed(s, p, "Microsoft.Authorization/roleAssignments/write", "/") is (
        builtin == "Owner"
    )


def test_custom_role_names_are_unique(s: Session) -> None:
    rbac.put_custom_role(s, str(uuid.uuid4()), "Twin", "", {"actions": []}, NOW)
    with pytest.raises(Conflict) as exc:
        rbac.put_custom_role(s, str(uuid.uuid4()), "twin", "", {"actions": []}, NOW)
    assert exc.value.code == "RoleDefinitionWithSameNameExists"


@pytest.mark.parametrize(
    "permissions",
    [
        {"actions": "*"},
        {"actions": [1]},
        {"notActions": {"a": 1}},
        {"dataActions": [None]},
        {"actions": None},
    ],
)
def test_custom_role_permissions_must_be_lists_of_strings(
    s: Session, permissions: dict[str, object]
) -> None:
    with pytest.raises(BadRequest):
        rbac.put_custom_role(s, str(uuid.uuid4()), "Bad", "", permissions, NOW)


@pytest.mark.parametrize(
    ("name", "description"), [("", ""), ("  ", ""), ("x" * 129, ""), ("ok", "d" * 1001)]
)
def test_custom_role_name_and_description_lengths(s: Session, name: str, description: str) -> None:
    with pytest.raises(BadRequest):
        rbac.put_custom_role(s, str(uuid.uuid4()), name, description, {"actions": []}, NOW)


def test_grant_command() -> None:
    grant = rbac.Grant("Key Vault Secrets User", RG_A, "vault:v1", GET_SECRET, data=True)
    assert grant.command() == (
        'pgvault role assignment create --assignee vault:v1 --role "Key Vault Secrets User" '
        f"--scope {RG_A}"
    )


# -- the action and scope of every route -----------------------------------------------------

S = "/subscriptions/s1"
R = f"{S}/resourceGroups/rg1"
V = f"{R}/providers/Microsoft.DataProtection/backupVaults/v1"
INST = f"{V}/backupInstances/bi1"
PG = f"{R}/providers/Microsoft.DBforPostgreSQL/servers/pg1"
KV = f"{R}/providers/Microsoft.KeyVault/vaults/kv1"
SA = f"{R}/providers/Microsoft.Storage/storageAccounts/sa1"
CONT = f"{SA}/blobServices/default/containers"
AZ = "providers/Microsoft.Authorization"
LOC = f"{R}/providers/Microsoft.DataProtection/locations/westus"

ROUTES: list[tuple[str, str, str, str]] = [
    # (method, path, action, scope)
    # tenancy
    ("GET", "/subscriptions", "Microsoft.Resources/subscriptions/read", "/"),
    ("GET", S, "Microsoft.Resources/subscriptions/read", S),
    ("GET", "/tenants", "Microsoft.Resources/tenants/read", "/"),
    (
        "POST",
        "/providers/Microsoft.ResourceGraph/resources",
        "Microsoft.ResourceGraph/resources/read",
        "/",
    ),
    ("PUT", R, "Microsoft.Resources/subscriptions/resourceGroups/write", R),
    ("GET", R, "Microsoft.Resources/subscriptions/resourceGroups/read", R),
    # vaults
    ("PUT", V, f"{DPV}/write", V),
    ("PATCH", V, f"{DPV}/write", V),
    ("GET", V, f"{DPV}/read", V),
    ("HEAD", V, f"{DPV}/read", V),
    ("DELETE", V, f"{DPV}/delete", V),
    # vault notifications (pgvault extension)
    (
        "PUT",
        f"{V}/notificationSettings/default",
        f"{DPV}/notificationSettings/write",
        f"{V}/notificationSettings/default",
    ),
    (
        "GET",
        f"{V}/notificationSettings/default",
        f"{DPV}/notificationSettings/read",
        f"{V}/notificationSettings/default",
    ),
    (
        "POST",
        f"{V}/notificationSettings/default/test",
        f"{DPV}/notificationSettings/test/action",
        f"{V}/notificationSettings/default",
    ),
    (
        "GET",
        f"{R}/providers/Microsoft.DataProtection/backupVaults",
        f"{DPV}/read",
        f"{R}/providers/Microsoft.DataProtection",
    ),
    (
        "GET",
        f"{S}/providers/Microsoft.DataProtection/backupVaults",
        f"{DPV}/read",
        f"{S}/providers/Microsoft.DataProtection",
    ),
    # policies
    ("PUT", f"{V}/backupPolicies/p1", f"{DPV}/backupPolicies/write", f"{V}/backupPolicies/p1"),
    ("GET", f"{V}/backupPolicies/p1", f"{DPV}/backupPolicies/read", f"{V}/backupPolicies/p1"),
    ("GET", f"{V}/backupPolicies", f"{DPV}/backupPolicies/read", V),
    ("DELETE", f"{V}/backupPolicies/p1", f"{DPV}/backupPolicies/delete", f"{V}/backupPolicies/p1"),
    # instances and their actions
    ("POST", f"{V}/validateForBackup", f"{DPV}/validateForBackup/action", V),
    ("PUT", INST, f"{BI}/write", INST),
    ("GET", INST, f"{BI}/read", INST),
    ("GET", f"{V}/backupInstances", f"{BI}/read", V),
    ("DELETE", INST, f"{BI}/delete", INST),
    ("POST", f"{INST}/backup", f"{BI}/backup/action", INST),
    ("POST", f"{INST}/validateRestore", f"{BI}/validateRestore/action", INST),
    ("POST", f"{INST}/validateForModifyBackup", f"{BI}/validateForModifyBackup/action", INST),
    ("POST", f"{INST}/restore", f"{BI}/restore/action", INST),
    ("POST", f"{INST}/stopProtection", f"{BI}/stopProtection/action", INST),
    ("POST", f"{INST}/rehydrate", f"{BI}/rehydrate/action", INST),
    ("POST", f"{INST}/suspendBackups", f"{BI}/suspendBackups/action", INST),
    ("POST", f"{INST}/resumeProtection", f"{BI}/resumeProtection/action", INST),
    ("POST", f"{INST}/resumeBackups", f"{BI}/resumeBackups/action", INST),
    # soft-deleted instances
    ("GET", f"{V}/deletedBackupInstances", f"{DPV}/deletedBackupInstances/read", V),
    (
        "GET",
        f"{V}/deletedBackupInstances/bi1",
        f"{DPV}/deletedBackupInstances/read",
        f"{V}/deletedBackupInstances/bi1",
    ),
    (
        "POST",
        f"{V}/deletedBackupInstances/bi1/undelete",
        f"{DPV}/deletedBackupInstances/undelete/action",
        f"{V}/deletedBackupInstances/bi1",
    ),
    # recovery points
    ("GET", f"{INST}/recoveryPoints", f"{BI}/recoveryPoints/read", INST),
    (
        "GET",
        f"{INST}/recoveryPoints/rp1",
        f"{BI}/recoveryPoints/read",
        f"{INST}/recoveryPoints/rp1",
    ),
    (
        "GET",
        f"{INST}/recoveryPoints/rp1/contents",
        f"{BI}/recoveryPoints/contents/read",
        f"{INST}/recoveryPoints/rp1",
    ),
    # jobs and operations
    ("GET", f"{V}/backupJobs", f"{DPV}/backupJobs/read", V),
    ("GET", f"{V}/backupJobs/j1", f"{DPV}/backupJobs/read", f"{V}/backupJobs/j1"),
    ("GET", f"{V}/operationStatus/o1", f"{DPV}/operationStatus/read", f"{V}/operationStatus/o1"),
    (
        "GET",
        f"{V}/operationResults/o1",
        f"{DPV}/operationResults/read",
        f"{V}/operationResults/o1",
    ),
    ("POST", f"{V}/backupJobs/j1/cancel", f"{DPV}/backupJobs/cancel/action", f"{V}/backupJobs/j1"),
    # the secondary region (cross-region restore): checked at the subscription
    *(
        ("POST", f"{LOC}/{name}", f"Microsoft.DataProtection/locations/{name}/action", S)
        for name in (
            "fetchSecondaryRecoveryPoints",
            "validateCrossRegionRestore",
            "crossRegionRestore",
            "fetchCrossRegionRestoreJob",
            "fetchCrossRegionRestoreJobs",
        )
    ),
    (
        "GET",
        f"{LOC}/secondaryBackupInstances",
        "Microsoft.DataProtection/locations/secondaryBackupInstances/read",
        S,
    ),
    # servers
    ("PUT", PG, f"{SERVERS}/write", PG),
    ("GET", PG, f"{SERVERS}/read", PG),
    ("DELETE", PG, f"{SERVERS}/delete", PG),
    ("GET", f"{PG}/firewallRules", f"{SERVERS}/firewallRules/read", PG),
    (
        "GET",
        f"{PG}/firewallRules/AllowAllWindowsAzureIps",
        f"{SERVERS}/firewallRules/read",
        f"{PG}/firewallRules/AllowAllWindowsAzureIps",
    ),
    (
        "GET",
        f"{R}/providers/Microsoft.DBforPostgreSQL/servers",
        f"{SERVERS}/read",
        f"{R}/providers/Microsoft.DBforPostgreSQL",
    ),
    # key vaults and secrets
    ("PUT", KV, "Microsoft.KeyVault/vaults/write", KV),
    ("GET", KV, "Microsoft.KeyVault/vaults/read", KV),
    ("DELETE", KV, "Microsoft.KeyVault/vaults/delete", KV),
    (
        "GET",
        f"{R}/providers/Microsoft.KeyVault/vaults",
        "Microsoft.KeyVault/vaults/read",
        f"{R}/providers/Microsoft.KeyVault",
    ),
    ("PUT", f"{KV}/secrets/s1", f"{SECRETS}/write", f"{KV}/secrets/s1"),
    ("GET", f"{KV}/secrets/s1", f"{SECRETS}/read", f"{KV}/secrets/s1"),
    ("GET", f"{KV}/secrets", f"{SECRETS}/read", KV),
    # storage accounts and containers
    ("PUT", SA, "Microsoft.Storage/storageAccounts/write", SA),
    ("GET", SA, "Microsoft.Storage/storageAccounts/read", SA),
    (
        "GET",
        f"{R}/providers/Microsoft.Storage/storageAccounts",
        "Microsoft.Storage/storageAccounts/read",
        f"{R}/providers/Microsoft.Storage",
    ),
    ("PUT", f"{CONT}/c1", f"{CONTAINERS}/write", f"{CONT}/c1"),
    ("GET", f"{CONT}/c1", f"{CONTAINERS}/read", f"{CONT}/c1"),
    ("GET", CONT, f"{CONTAINERS}/read", f"{SA}/blobServices/default"),
    # role assignments: the scope is everything before /providers/Microsoft.Authorization
    ("PUT", f"/{AZ}/roleAssignments/a1", f"{AUTHZ}/roleAssignments/write", "/"),
    ("GET", f"/{AZ}/roleAssignments", f"{AUTHZ}/roleAssignments/read", "/"),
    ("GET", f"/{AZ}/roleAssignments/a1", f"{AUTHZ}/roleAssignments/read", "/"),
    ("DELETE", f"/{AZ}/roleAssignments/a1", f"{AUTHZ}/roleAssignments/delete", "/"),
    ("PUT", f"{S}/{AZ}/roleAssignments/a1", f"{AUTHZ}/roleAssignments/write", S),
    ("PUT", f"{R}/{AZ}/roleAssignments/a1", f"{AUTHZ}/roleAssignments/write", R),
    ("GET", f"{R}/{AZ}/roleAssignments", f"{AUTHZ}/roleAssignments/read", R),
    ("GET", f"{R}/{AZ}/roleAssignments/a1", f"{AUTHZ}/roleAssignments/read", R),
    ("DELETE", f"{R}/{AZ}/roleAssignments/a1", f"{AUTHZ}/roleAssignments/delete", R),
    ("PUT", f"{V}/{AZ}/roleAssignments/a1", f"{AUTHZ}/roleAssignments/write", V),
    ("GET", f"{INST}/{AZ}/roleAssignments", f"{AUTHZ}/roleAssignments/read", INST),
    ("PUT", f"{KV}/{AZ}/roleAssignments/a1", f"{AUTHZ}/roleAssignments/write", KV),
    # role definitions
    ("GET", f"/{AZ}/roleDefinitions", f"{AUTHZ}/roleDefinitions/read", "/"),
    ("GET", f"/{AZ}/roleDefinitions/d1", f"{AUTHZ}/roleDefinitions/read", "/"),
    ("GET", f"{R}/{AZ}/roleDefinitions", f"{AUTHZ}/roleDefinitions/read", R),
    ("GET", f"{R}/{AZ}/roleDefinitions/d1", f"{AUTHZ}/roleDefinitions/read", R),
    ("PUT", f"{S}/{AZ}/roleDefinitions/d1", f"{AUTHZ}/roleDefinitions/write", S),
    ("PUT", f"{R}/{AZ}/roleDefinitions/d1", f"{AUTHZ}/roleDefinitions/write", R),
    # principals: tenant-wide
    ("PUT", "/pgvault/principals/p1", "pgvault/principals/write", "/"),
    ("GET", "/pgvault/principals/p1", "pgvault/principals/read", "/"),
    ("GET", "/pgvault/principals", "pgvault/principals/read", "/"),
    ("DELETE", "/pgvault/principals/p1", "pgvault/principals/delete", "/"),
    ("POST", "/pgvault/catalog/rebuild", "pgvault/catalog/action", "/"),
    # service metrics (Prometheus): a reader of the whole service
    ("GET", "/metrics", "Microsoft.Insights/metrics/read", "/"),
    # audit log
    (
        "GET",
        f"{S}/providers/Microsoft.Insights/eventtypes/management/values",
        "Microsoft.Insights/eventtypes/values/read",
        f"{S}/providers/Microsoft.Insights/eventtypes/management",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "action", "scope"),
    ROUTES,
    ids=[
        f"{m} {p.replace(INST, 'INST').replace(V, 'V').replace(R, 'RG')}" for m, p, _, _ in ROUTES
    ],
)
def test_requested(method: str, path: str, action: str, scope: str) -> None:
    wanted = requested(method, path)
    assert (wanted.action, wanted.scope) == (action, scope)


def test_requested_ignores_trailing_and_double_slashes() -> None:
    assert requested("PUT", f"{V}/") == requested("PUT", V)
    assert requested("GET", V.replace("/", "//")) == requested("GET", V)


EXAMPLE_NAMES = {
    "{sub}": "s1",
    "{rg}": "rg1",
    "{vault}": "v1",
    "{bi}": "bi1",
    "{point}": "rp1",
    "{job_id}": "j1",
    "{op_id}": "o1",
    "{region}": "westus",
    "{kv}": "kv1",
    "{account}": "sa1",
    "{role_id}": "d1",
    "/{scope}": R,
    "{rule}": "AllowAllWindowsAzureIps",
    "{server}": "pg1",
}
# `{name}` is named after the collection it is in
NAME_BY_COLLECTION = {
    "principals": "p1",
    "roleAssignments": "a1",
    "backupPolicies": "p1",
    "servers": "pg1",
    "vaults": "kv1",
    "secrets": "s1",
    "storageAccounts": "sa1",
    "containers": "c1",
}
NOT_AUTHORIZED = {
    ("POST", "/oauth2/token"),
    ("POST", "/oauth2/revoke"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    # sign-in as az and MSAL make it (api/signin.py): public discovery and token endpoints
    ("GET", "/metadata/endpoints"),
    ("GET", "/adfs/.well-known/openid-configuration"),
    ("GET", "/adfs/{tenant}/v2.0/.well-known/openid-configuration"),
    ("GET", "/{tenant}/.well-known/openid-configuration"),
    ("GET", "/{tenant}/v2.0/.well-known/openid-configuration"),
    ("GET", "/{tenant}/discovery/keys"),
    ("POST", "/adfs/oauth2/token"),
    ("POST", "/{tenant}/oauth2/v2.0/token"),
    ("POST", "/{tenant}/oauth2/token"),
    # Microsoft Graph directory reads (api/graph.py): any signed-in principal, as in Entra ID
    ("GET", "/v1.0/servicePrincipals"),
    ("GET", "/v1.0/users"),
    ("GET", "/v1.0/me"),
    ("POST", "/v1.0/directoryObjects/getByIds"),
    # the key-vault data plane (api/keyvault.py): signed in, then Key Vault's data actions
    # (readMetadata / getSecret) checked in the route at the key vault or secret
    ("GET", "/keyvaults/{kv}/secrets"),
    ("GET", "/keyvaults/{kv}/secrets/{name}"),
    ("GET", "/keyvaults/{kv}/secrets/{name}/{version}"),
}


def test_every_api_route_is_in_the_table(tmp_path: Path) -> None:
    """A new route must get a row above (and with it a decision about its action)."""
    from pgvault.api.app import create_app

    ctx = Context.create(Settings(home=tmp_path, datastore_url="memory://"))
    try:
        paths = create_app(ctx, start_workers=False).openapi()["paths"]
    finally:
        ctx.db.dispose()
    covered = {(m, p) for m, p, _, _ in ROUTES}
    missing = []
    for template, operations in paths.items():
        for method in (m.upper() for m in operations):
            if (method, template) in NOT_AUTHORIZED:
                continue
            concrete = template
            for key, value in EXAMPLE_NAMES.items():
                concrete = concrete.replace(key, value)
            if "{name}" in concrete:
                collection = concrete.rsplit("/", 2)[-2]
                concrete = concrete.replace("{name}", NAME_BY_COLLECTION[collection])
            if (method, concrete) not in covered:
                missing.append(f"{method} {template}")
    assert missing == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/subscriptions"),
        ("GET", f"/{AZ}/roleDefinitions"),
        ("GET", f"{R}/{AZ}/roleDefinitions"),
        ("GET", f"{R}/{AZ}/roleDefinitions/d1"),
    ],
)
def test_open_actions(method: str, path: str) -> None:
    """Only finding one's way is open to any signed-in principal: never a write."""
    assert requested(method, path).open


def test_writes_are_never_open() -> None:
    for method, path, action, _ in ROUTES:
        if method not in ("GET", "HEAD") and not action.endswith("/read"):  # a query reads
            assert not requested(method, path).open, (method, path)
    assert all(a.endswith("/read") for a in OPEN_ACTIONS)
