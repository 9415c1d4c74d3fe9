"""The access matrix: every built-in role x every kind of operation x inside/outside its scope.

Through the real app: one service principal per role and placement, each with its role
assigned through the API, each calling with its own bearer token. Placements:

- ``inside``:  role assigned on resource group ``rg-in``, resource in ``rg-in``;
- ``outside``: the same principal, resource in ``rg-out`` (never allowed: nothing inherits
  sideways);
- ``root``:    role assigned at ``/`` (everything inherits it), resource in ``rg-out``.

The expected answers are written out below from what each role means; a change to a role
definition that contradicts them fails here. Allowed calls must get past authorization (any
answer but 401/403: some fail later for unrelated reasons, e.g. a restore request without a
body); denied calls must be 403 `AuthorizationFailed` naming the action that was missing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.apiapp import AUTHZ, admin_form, bearer, client_form, in_process

DP = "providers/Microsoft.DataProtection/backupVaults"
PG = "providers/Microsoft.DBforPostgreSQL/servers"
KV = "providers/Microsoft.KeyVault/vaults"
SA = "providers/Microsoft.Storage/storageAccounts"
DPV = "Microsoft.DataProtection/backupVaults"
BI = f"{DPV}/backupInstances"

ROLES = {
    "Owner": "owner",
    "Contributor": "contrib",
    "Reader": "reader",
    "Backup Contributor": "bkcontrib",
    "Backup Operator": "bkop",
    "Backup Reader": "bkreader",
    "Storage Blob Data Contributor": "blobdata",
    "Key Vault Secrets User": "kvsecrets",
    "PostgreSQL Backup Target": "pgtarget",
}
PLACEMENTS = ("inside", "outside", "root")


@dataclass(frozen=True)
class Op:
    """One representative call per action family: how to make it, and the action it needs."""

    method: str
    action: str
    path: Callable[[World, str, str], str]  # (world, rg path, tag) -> path
    body: Callable[[World, str, str], Any] = lambda _w, _rg, _tag: None
    ok: int = 200  # the status when allowed
    tenant_wide: bool = False  # its scope is `/` whatever the resource group


def _instance_body(w: World, rg: str, tag: str) -> dict[str, Any]:
    return {
        "properties": {
            "dataSourceInfo": {"resourceID": f"{rg}/{PG}/pg/databases/db-{tag}"},
            "policyInfo": {"policyId": f"{rg}/{DP}/v/backupPolicies/p"},
            "datasourceAuthCredentials": {
                "secretStoreResource": {
                    "uri": w.secret_uris[rg],
                    "secretStoreType": "AzureKeyVault",
                }
            },
        }
    }


OPS: dict[str, Op] = {
    "read-vault": Op("GET", f"{DPV}/read", lambda _w, rg, _t: f"{rg}/{DP}/v"),
    "write-vault": Op(
        "PUT",
        f"{DPV}/write",
        lambda _w, rg, _t: f"{rg}/{DP}/v",
        lambda _w, _rg, _t: {"location": "eastus", "tags": {"touched": "yes"}},
    ),
    "delete-vault": Op("DELETE", f"{DPV}/delete", lambda _w, rg, t: f"{rg}/{DP}/gone-{t}"),
    "write-policy": Op(
        "PUT",
        f"{DPV}/backupPolicies/write",
        lambda _w, rg, t: f"{rg}/{DP}/v/backupPolicies/new-{t}",
        lambda _w, _rg, _t: {"properties": {}},
    ),
    "delete-policy": Op(
        "DELETE",
        f"{DPV}/backupPolicies/delete",
        lambda _w, rg, t: f"{rg}/{DP}/v/backupPolicies/gone-{t}",
    ),
    "protect": Op(
        "PUT",
        f"{BI}/write",
        lambda _w, rg, t: f"{rg}/{DP}/v/backupInstances/new-{t}",
        lambda w, rg, t: _instance_body(w, rg, f"new-{t}"),
        ok=201,
    ),
    "delete-instance": Op(
        "DELETE",
        f"{BI}/delete",
        lambda _w, rg, t: f"{rg}/{DP}/v/backupInstances/gone-{t}",
        ok=202,
    ),
    "backup": Op(
        "POST",
        f"{BI}/backup/action",
        lambda _w, rg, t: f"{rg}/{DP}/v/backupInstances/kept-{t}/backup",
        lambda _w, _rg, _t: {"backupRuleOptions": {"ruleName": "BackupDaily"}},
        ok=202,
    ),
    "validate-restore": Op(
        "POST",
        f"{BI}/validateRestore/action",
        lambda _w, rg, t: f"{rg}/{DP}/v/backupInstances/kept-{t}/validateRestore",
        lambda _w, _rg, _t: {},
        ok=400,  # past authorization, the empty request is refused
    ),
    "restore": Op(
        "POST",
        f"{BI}/restore/action",
        lambda _w, rg, t: f"{rg}/{DP}/v/backupInstances/kept-{t}/restore",
        lambda _w, _rg, _t: {},
        ok=400,
    ),
    "read-jobs": Op("GET", f"{DPV}/backupJobs/read", lambda _w, rg, _t: f"{rg}/{DP}/v/backupJobs"),
    "read-server": Op(
        "GET", "Microsoft.DBforPostgreSQL/servers/read", lambda _w, rg, _t: f"{rg}/{PG}/pg"
    ),
    "register-server": Op(
        "PUT",
        "Microsoft.DBforPostgreSQL/servers/write",
        lambda _w, rg, t: f"{rg}/{PG}/pg-{t}",
        lambda _w, _rg, _t: {
            "location": "eastus",
            "properties": {"fullyQualifiedDomainName": "db.invalid", "port": 5432},
        },
    ),
    "put-secret": Op(
        "PUT",
        "Microsoft.KeyVault/vaults/secrets/write",
        lambda w, rg, t: f"{rg}/{KV}/{w.keyvaults[rg]}/secrets/s-{t}",
        lambda _w, _rg, _t: {"properties": {"value": "not-a-real-connection-string"}},
    ),
    "create-container": Op(
        "PUT",
        "Microsoft.Storage/storageAccounts/blobServices/containers/write",
        lambda w, rg, t: f"{rg}/{SA}/{w.accounts[rg]}/blobServices/default/containers/c-{t}",
        lambda _w, _rg, _t: {},
    ),
    "assign-role": Op(
        "PUT",
        "Microsoft.Authorization/roleAssignments/write",
        lambda _w, rg, _t: f"{rg}{AUTHZ}/roleAssignments/{uuid.uuid4()}",
        lambda w, _rg, _t: {
            "properties": {
                "roleDefinitionId": f"{AUTHZ}/roleDefinitions/{w.role_ids['Reader']}",
                "principalId": w.bystander,
            }
        },
        ok=201,
    ),
    "create-principal": Op(
        "PUT",
        "pgvault/principals/write",
        lambda _w, _rg, t: f"/pgvault/principals/made-by-{t}",
        lambda _w, _rg, _t: {"properties": {"principalType": "service-principal"}},
        ok=201,
        tenant_wide=True,
    ),
}

# What each role may do where it is assigned: written from the roles' meanings.
_ALL = set(OPS)
_READS = {"read-vault", "read-jobs", "read-server"}
_BACKUP_MANAGEMENT = {
    "write-vault",
    "write-policy",
    "delete-policy",
    "protect",
    "delete-instance",
    "backup",
    "validate-restore",
    "restore",
}
ALLOWED: dict[str, set[str]] = {
    # everything, granting access included
    "Owner": _ALL,
    # everything but granting access (role assignments, principals)
    "Contributor": _ALL - {"assign-role", "create-principal"},
    # look, don't touch
    "Reader": _READS,
    # all backup management but deleting the vault; no access grants, no servers or secrets
    "Backup Contributor": _READS | _BACKUP_MANAGEMENT,
    # protect, back up, restore; not policies, not removing instances, not the vault itself
    "Backup Operator": _READS | {"protect", "backup", "validate-restore", "restore"},
    # Microsoft.DataProtection reads only
    "Backup Reader": {"read-vault", "read-jobs"},
    # containers (and blob data); nothing else in the control plane
    "Storage Blob Data Contributor": {"create-container"},
    # secret values on the data plane only: no control-plane call at all
    "Key Vault Secrets User": set(),
    # what a vault's identity needs on a server: read it (and its databases)
    "PostgreSQL Backup Target": {"read-server"},
}


def expected_allowed(role: str, op: str, placement: str) -> bool:
    if placement == "outside":
        return False  # assignments never reach a sibling resource group
    if OPS[op].tenant_wide and placement != "root":
        return False  # principals live at `/`: a resource-group role never reaches them
    return op in ALLOWED[role]


# -- the world: one app, principals with their roles, resources in both resource groups ------


@dataclass(repr=False)
class World:
    client: TestClient
    admin: dict[str, str]
    rgs: dict[str, str] = field(default_factory=dict)  # placement -> resource group path
    keyvaults: dict[str, str] = field(default_factory=dict)  # rg path -> key vault name
    accounts: dict[str, str] = field(default_factory=dict)  # rg path -> storage account
    secret_uris: dict[str, str] = field(default_factory=dict)  # rg path -> secret uri
    role_ids: dict[str, str] = field(default_factory=dict)
    tokens: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    bystander: str = ""

    def __repr__(self) -> str:
        return "World()"

    def ok(self, method: str, path: str, body: Any = None, expect: tuple[int, ...] = ()) -> Any:
        r = self.client.request(method, path, headers=self.admin, json=body)
        assert r.status_code in (expect or (200, 201)), (method, path, r.status_code, r.text)
        return r.json() if r.content else None


def _principal(w: World, name: str) -> tuple[str, dict[str, str]]:
    """A service principal: its id and the headers carrying its token."""
    body = w.ok(
        "PUT", f"/pgvault/principals/{name}", {"properties": {"principalType": "service-principal"}}
    )
    props = body["properties"]
    return props["principalId"], bearer(w.client, client_form(props["clientId"], props["secret"]))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("matrix")
    blob_root = tmp_path_factory.mktemp("blobs")
    with in_process(home) as (ctx, client):
        w = World(client, bearer(client, admin_form(ctx)))
        sub = w.ok("GET", "/subscriptions")["value"][0]["subscriptionId"]
        for role in ROLES:
            found = w.ok("GET", f"{AUTHZ}/roleDefinitions?$filter=roleName eq '{role}'")["value"]
            assert [d["properties"]["roleName"] for d in found] == [role]
            w.role_ids[role] = found[0]["name"]

        suffix = uuid.uuid4().hex[:8]  # key vault and storage account names are global
        rg_in, rg_out = (f"/subscriptions/{sub}/resourceGroups/rg-{s}" for s in ("in", "out"))
        w.rgs = {"inside": rg_in, "outside": rg_out, "root": rg_out}
        for short, rg in (("in", rg_in), ("out", rg_out)):
            w.ok("PUT", rg, {"location": "eastus"})
            w.ok("PUT", f"{rg}/{DP}/v", {"location": "eastus"})
            w.ok("PUT", f"{rg}/{DP}/v/backupPolicies/p", {"properties": {}})
            w.ok(
                "PUT",
                f"{rg}/{PG}/pg",
                {"location": "eastus", "properties": {"fullyQualifiedDomainName": "db.invalid"}},
            )
            kv = w.keyvaults[rg] = f"kv{short}{suffix}"
            w.ok("PUT", f"{rg}/{KV}/{kv}", {"location": "eastus"})
            secret = w.ok("PUT", f"{rg}/{KV}/{kv}/secrets/conn", {"properties": {"value": "x"}})
            w.secret_uris[rg] = secret["properties"]["secretUri"]
            account = w.accounts[rg] = f"sa{short}{suffix}"
            w.ok(
                "PUT",
                f"{rg}/{SA}/{account}",
                {
                    "location": "eastus",
                    "properties": {"backend": {"type": "local", "path": str(blob_root / short)}},
                },
            )

        # what the deleting operations delete: one of each per role and placement
        for slug in ROLES.values():
            for placement in PLACEMENTS:
                rg, tag = w.rgs[placement], f"{slug}-{placement}"
                w.ok("PUT", f"{rg}/{DP}/gone-{tag}", {"location": "eastus"}, (201,))
                w.ok("PUT", f"{rg}/{DP}/v/backupPolicies/gone-{tag}", {"properties": {}})
                for instance in (f"gone-{tag}", f"kept-{tag}"):
                    body = _instance_body(w, rg, instance)
                    w.ok("PUT", f"{rg}/{DP}/v/backupInstances/{instance}", body, (201,))

        # whom "assign-role" gives Reader to: a vault's managed identity (no sign-in needed)
        w.bystander = w.ok("GET", f"{w.rgs['inside']}/{DP}/v")["identity"]["principalId"]
        for role, slug in ROLES.items():
            for where, scope in (("rg", w.rgs["inside"]), ("root", "")):
                principal_id, headers = _principal(w, f"m-{slug}-{where}")
                body = {
                    "properties": {
                        "roleDefinitionId": f"{AUTHZ}/roleDefinitions/{w.role_ids[role]}",
                        "principalId": principal_id,
                    }
                }
                w.ok("PUT", f"{scope}{AUTHZ}/roleAssignments/{uuid.uuid4()}", body, (201,))
                w.tokens[(role, where)] = headers
        yield w


# -- the matrix ------------------------------------------------------------------------------

CASES = [
    pytest.param(role, op, placement, id=f"{slug}-{op}-{placement}")
    for role, slug in ROLES.items()
    for op in OPS
    for placement in PLACEMENTS
]


@pytest.mark.parametrize(("role", "op", "placement"), CASES)
def test_matrix(world: World, role: str, op: str, placement: str) -> None:
    spec = OPS[op]
    rg = world.rgs[placement]
    tag = f"{ROLES[role]}-{placement}"
    headers = world.tokens[(role, "root" if placement == "root" else "rg")]
    path = spec.path(world, rg, tag)
    r = world.client.request(spec.method, path, headers=headers, json=spec.body(world, rg, tag))
    if expected_allowed(role, op, placement):
        assert r.status_code == spec.ok, r.text
        if spec.ok == 400:  # past authorization, the request itself was refused
            assert r.json()["error"]["code"] == "InvalidRequestContent"
    else:
        assert r.status_code == 403, r.text
        error = r.json()["error"]
        assert error["code"] == "AuthorizationFailed"
        assert error["target"] == spec.action
        # names the missing action, and the scope it was needed at
        assert f"perform action '{spec.action}' over scope '" in error["message"]
        scope = "'/'" if spec.tenant_wide else f"'{rg}"  # the resource, in the group
        assert f"over scope {scope}" in error["message"]
