"""What az and ARM clients rely on: 201 only on create, friendlyName kept, Azure's
principal types, resume from a suspended instance, and deleting a vault of soft-deleted ones."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.support.apiapp import AUTHZ, Api

DP = "providers/Microsoft.DataProtection/backupVaults"
PG = "providers/Microsoft.DBforPostgreSQL/servers"
KV = "providers/Microsoft.KeyVault/vaults"


@pytest.fixture(scope="module")
def world(api: Api) -> dict[str, str]:
    """A resource group with a server, a key vault secret, and vault `v` with policy `p`."""
    rg = api.rg("sem")
    api.ok("PUT", rg, {"location": "eastus"})
    api.ok("PUT", f"{rg}/{PG}/pg", {"location": "eastus", "properties": {"host": "db.invalid"}})
    kv = f"kv{uuid.uuid4().hex[:10]}"
    api.ok("PUT", f"{rg}/{KV}/{kv}", {"location": "eastus"})
    secret = api.ok("PUT", f"{rg}/{KV}/{kv}/secrets/conn", {"properties": {"value": "x"}})
    api.ok("PUT", f"{rg}/{DP}/v", {"location": "eastus"}, 201)
    api.ok("PUT", f"{rg}/{DP}/v/backupPolicies/p", {"properties": {}})
    return {"rg": rg, "secret": secret["properties"]["secretUri"]}


def _instance(world: dict[str, str], db: str, vault: str = "v", **props: Any) -> dict[str, Any]:
    rg = world["rg"]
    return {
        "properties": {
            "dataSourceInfo": {"resourceID": f"{rg}/{PG}/pg/databases/{db}"},
            "policyInfo": {"policyId": f"{rg}/{DP}/{vault}/backupPolicies/p"},
            "datasourceAuthCredentials": {
                "secretStoreResource": {"uri": world["secret"], "secretStoreType": "AzureKeyVault"}
            },
            **props,
        }
    }


def _done(api: Api, r: Any) -> dict[str, Any]:
    """Follow a 202's Azure-AsyncOperation to its (already final) status."""
    assert r.status_code == 202, r.text
    url = r.headers["Azure-AsyncOperation"]
    status = api.get(url[url.index("/subscriptions/") :])
    assert status.status_code == 200, status.text
    return dict(status.json())


def test_instance_put_is_201_then_200_and_keeps_friendly_name(
    api: Api, world: dict[str, str]
) -> None:
    path = f"{world['rg']}/{DP}/v/backupInstances/shop"
    created = api.ok("PUT", path, _instance(world, "shop", friendlyName="pg\\shop (prod)"), 201)
    assert created["properties"]["friendlyName"] == "pg\\shop (prod)"
    updated = api.ok("PUT", path, _instance(world, "shop"), 200)  # kept when not sent
    assert updated["properties"]["friendlyName"] == "pg\\shop (prod)"
    renamed = api.ok("PUT", path, _instance(world, "shop", friendlyName="shop"), 200)
    assert renamed["properties"]["friendlyName"] == "shop"
    listed = api.ok("GET", f"{world['rg']}/{DP}/v/backupInstances")["value"]
    assert [i["properties"]["friendlyName"] for i in listed if i["name"] == "shop"] == ["shop"]


def test_instance_without_friendly_name_shows_server_and_database(
    api: Api, world: dict[str, str]
) -> None:
    path = f"{world['rg']}/{DP}/v/backupInstances/plain"
    body = api.ok("PUT", path, _instance(world, "plain"), 201)
    assert body["properties"]["friendlyName"] == "pg\\plain"


@pytest.mark.parametrize("name", ["", "   ", "x" * 257, "line\nbreak"])
def test_bad_friendly_name_is_400_and_creates_nothing(
    api: Api, world: dict[str, str], name: str
) -> None:
    path = f"{world['rg']}/{DP}/v/backupInstances/badname"
    r = api.call("PUT", path, _instance(world, "badname", friendlyName=name))
    assert r.status_code == 400, r.text
    assert api.call("GET", path).status_code == 404


def test_resume_protection_from_suspended_and_from_stopped(api: Api, world: dict[str, str]) -> None:
    path = f"{world['rg']}/{DP}/v/backupInstances/resumed"
    api.ok("PUT", path, _instance(world, "resumed"), 201)
    for pause in ("suspendBackups", "stopProtection"):
        assert _done(api, api.call("POST", f"{path}/{pause}"))["status"] == "Succeeded"
        state = api.ok("GET", path)["properties"]["currentProtectionState"]
        assert state in ("BackupSchedulesSuspended", "ProtectionStopped")
        assert _done(api, api.call("POST", f"{path}/resumeProtection"))["status"] == "Succeeded"
        state = api.ok("GET", path)["properties"]["currentProtectionState"]
        assert state == "ProtectionConfigured"


def test_vault_identity_assignment_is_a_service_principal(api: Api, world: dict[str, str]) -> None:
    rg = world["rg"]
    identity = api.ok("GET", f"{rg}/{DP}/v")["identity"]["principalId"]
    reader = api.ok("GET", f"{AUTHZ}/roleDefinitions?$filter=roleName eq 'Reader'")["value"][0]
    body = {
        "properties": {
            "roleDefinitionId": reader["id"],
            "principalId": identity,
            "principalType": "ServicePrincipal",
        }
    }
    path = f"{rg}/{PG}/pg{AUTHZ}/roleAssignments/{uuid.uuid4()}"
    assert api.ok("PUT", path, body, 201)["properties"]["principalType"] == "ServicePrincipal"
    again = api.ok("PUT", path, body, 200)  # the same assignment again: an update, not a create
    assert again["properties"]["principalType"] == "ServicePrincipal"
    listed = api.ok("GET", f"{rg}/{PG}/pg{AUTHZ}/roleAssignments")["value"]
    types = {a["properties"]["principalType"] for a in listed}
    assert "ManagedIdentity" not in types


def test_vault_holding_only_soft_deleted_instances(api: Api, world: dict[str, str]) -> None:
    """As Azure: refused while soft-deleted instances keep data, saying until when and how to
    purge them now; after that route (soft delete off, undelete, delete) the vault goes."""
    rg = world["rg"]
    vault = f"{rg}/{DP}/sd"
    api.ok("PUT", vault, {"location": "eastus"}, 201)
    api.ok("PUT", f"{vault}/backupPolicies/p", {"properties": {}})
    inst = f"{vault}/backupInstances/gone"
    api.ok("PUT", inst, _instance(world, "gone-db", vault="sd"), 201)
    assert _done(api, api.call("DELETE", inst))["status"] == "Succeeded"
    r = api.call("DELETE", vault)
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == "UserErrorVaultNotEmpty"
    assert "1 soft-deleted backup instance(s)" in error["message"]
    assert "Stop protection" not in error["message"]
    fix = str(r.json())
    assert "undelete" in fix
    assert "Off" in fix

    off = {"properties": {"securitySettings": {"softDeleteSettings": {"state": "Off"}}}}
    api.ok("PATCH", vault, off)
    undo = api.call("POST", f"{vault}/deletedBackupInstances/gone/undelete")
    assert _done(api, undo)["status"] == "Succeeded"
    assert _done(api, api.call("DELETE", inst))["status"] == "Succeeded"
    assert api.ok("GET", f"{vault}/deletedBackupInstances")["value"] == []
    assert api.call("DELETE", vault).status_code == 200
    assert api.call("GET", vault).status_code == 404


def test_validate_for_modify_backup(api: Api, world: dict[str, str]) -> None:
    """az's validate-for-update: the backup checks for the instance itself (here the vault's
    identity has no roles, so the operation fails with a user error); another database is
    refused at once."""
    path = f"{world['rg']}/{DP}/v/backupInstances/modify"
    api.ok("PUT", path, _instance(world, "modify"), 201)
    own = {"backupInstance": _instance(world, "modify")["properties"]}
    status = _done(api, api.call("POST", f"{path}/validateForModifyBackup", own))
    assert status["status"] == "Failed"
    assert status["error"]["code"].startswith("UserError")
    # az sends the credentials empty: the instance's own secret is checked
    no_secret = {"backupInstance": {**own["backupInstance"], "datasourceAuthCredentials": {}}}
    status = _done(api, api.call("POST", f"{path}/validateForModifyBackup", no_secret))
    assert status["status"] == "Failed"
    other = {"backupInstance": _instance(world, "another")["properties"]}
    r = api.call("POST", f"{path}/validateForModifyBackup", other)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "UserErrorDatasourceCannotChange"
