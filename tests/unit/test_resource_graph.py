"""Resource Graph: exactly the queries `az dataprotection … list-from-resourcegraph` sends,
over what the caller may read; any other query shape is a 400 naming its stage."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.support.apiapp import AUTHZ, Api

DP = "providers/Microsoft.DataProtection/backupVaults"
PG = "providers/Microsoft.DBforPostgreSQL/servers"
KV = "providers/Microsoft.KeyVault/vaults"
GRAPH = "/providers/Microsoft.ResourceGraph/resources?api-version=2021-03-01"

# Built by the dataprotection extension 1.7.0 (backupcenter_helper), copied verbatim.
INSTANCES = (
    "RecoveryServicesResources | where type =~ 'microsoft.dataprotection/backupvaults/"
    "backupinstances'| extend vaultName = split(split(id, '/Microsoft.DataProtection/"
    "backupVaults/')[1],'/')[0]| extend protectionState = properties.currentProtectionState| "
    "extend datasourceId = properties.dataSourceInfo.resourceID | where properties."
    "dataSourceInfo.datasourceType in~ ('Microsoft.DBforPostgreSQL/servers/databases')"
)
JOBS = (
    "RecoveryServicesResources | where type =~ 'microsoft.dataprotection/backupvaults/"
    "backupjobs'| extend vaultName = properties.vaultName| extend status = properties.status| "
    "extend operation = case( tolower(properties.operationCategory) startswith 'backup' and "
    "properties.isUserTriggered == 'true', strcat('OnDemand',properties.operationCategory), "
    "tolower(properties.operationCategory) startswith 'backup' and properties.isUserTriggered "
    "== 'false', strcat('Scheduled', properties.operationCategory), type =~ 'microsoft."
    "dataprotection/backupVaults/backupJobs', properties.operationCategory, 'Invalid')| extend "
    "datasourceId = properties.dataSourceId | where properties.dataSourceType in~ ('Microsoft."
    "DBforPostgreSQL/servers/databases')"
)
VAULTS = "resources | where type =~ 'microsoft.dataprotection/backupvaults'"


@pytest.fixture(scope="module")
def world(api: Api) -> dict[str, Any]:
    """Two resource groups, a vault with two instances in each, one on-demand backup queued."""
    out: dict[str, Any] = {"rgs": []}
    for group in ("graph-a", "graph-b"):
        rg = api.rg(group)
        out["rgs"].append(rg)
        api.ok("PUT", rg, {"location": "eastus"})
        api.ok("PUT", f"{rg}/{PG}/pg", {"location": "eastus", "properties": {"host": "db.invalid"}})
        kv = f"kv{uuid.uuid4().hex[:10]}"
        api.ok("PUT", f"{rg}/{KV}/{kv}", {"location": "eastus"})
        uri = api.ok("PUT", f"{rg}/{KV}/{kv}/secrets/c", {"properties": {"value": "x"}})[
            "properties"
        ]["secretUri"]
        api.ok("PUT", f"{rg}/{DP}/vg-{group}", {"location": "eastus"}, 201)
        api.ok("PUT", f"{rg}/{DP}/vg-{group}/backupPolicies/p", {"properties": {}})
        for db in ("one", "two"):
            body = {
                "properties": {
                    "dataSourceInfo": {"resourceID": f"{rg}/{PG}/pg/databases/{db}"},
                    "policyInfo": {"policyId": f"{rg}/{DP}/vg-{group}/backupPolicies/p"},
                    "datasourceAuthCredentials": {
                        "secretStoreResource": {"uri": uri, "secretStoreType": "AzureKeyVault"}
                    },
                }
            }
            api.ok("PUT", f"{rg}/{DP}/vg-{group}/backupInstances/{db}", body, 201)
    backup = {"backupRuleOptions": {"ruleName": "BackupWeekly"}}
    rg = out["rgs"][0]
    api.ok("POST", f"{rg}/{DP}/vg-graph-a/backupInstances/one/backup", backup, 202)
    return out


def _query(api: Api, query: str, headers: Any = None, **extra: Any) -> Any:
    return api.call("POST", GRAPH, {"query": query, "subscriptions": [api.sub], **extra}, headers)


def test_instances_across_vaults_with_the_extended_columns(api: Api, world: Any) -> None:
    r = _query(api, INSTANCES)
    assert r.status_code == 200, r.text
    data = [d for d in r.json()["data"] if d["vaultName"].startswith("vg-graph-")]
    assert {(d["resourceGroup"], d["name"]) for d in data} == {
        ("graph-a", "one"), ("graph-a", "two"), ("graph-b", "one"), ("graph-b", "two")
    }  # fmt: skip
    row = data[0]
    assert row["type"] == "microsoft.dataprotection/backupvaults/backupinstances"
    assert row["protectionState"] == "ProtectionConfigured"
    assert row["datasourceId"] == row["properties"]["dataSourceInfo"]["resourceID"]
    assert row["subscriptionId"] == api.sub
    assert row["tenantId"]


def test_filters_by_group_vault_and_state(api: Api, world: Any) -> None:
    query = (
        INSTANCES + " | where resourceGroup in~ ('GRAPH-B') | where vaultName in~ ('vg-graph-b')"
        " | where protectionState in~ ('ProtectionConfigured')"
    )
    names = {(d["vaultName"], d["name"]) for d in _query(api, query).json()["data"]}
    assert names == {("vg-graph-b", "one"), ("vg-graph-b", "two")}
    none = INSTANCES + " | where protectionState in~ ('ProtectionStopped')"
    assert [d for d in _query(api, none).json()["data"] if d["vaultName"].startswith("vg-")] == []


def test_jobs_with_operation_status_and_time(api: Api, world: Any) -> None:
    query = JOBS + " | where vaultName in~ ('vg-graph-a') | where operation in~ ('OnDemandBackup')"
    data = _query(api, query).json()["data"]
    assert len(data) == 1
    assert data[0]["operation"] == "OnDemandBackup"
    assert data[0]["type"] == "microsoft.dataprotection/backupvaults/backupjobs"
    later = query + "| where properties.startTime > datetime(2999-01-01T00:00:00Z)"
    assert _query(api, later).json()["data"] == []
    failed = query + " | where status in~ ('Failed')"
    assert _query(api, failed).json()["data"] == []


def test_vaults(api: Api, world: Any) -> None:
    query = VAULTS + " | where resourceGroup in~ ('graph-a')"
    assert [d["name"] for d in _query(api, query).json()["data"]] == ["vg-graph-a"]


def test_only_what_the_caller_may_read(api: Api, world: Any) -> None:
    reader = api.principal(f"graph-reader-{uuid.uuid4().hex[:6]}")
    role = api.ok("GET", f"{AUTHZ}/roleDefinitions?$filter=roleName eq 'Backup Reader'")
    api.assign(world["rgs"][1], role["value"][0]["id"], reader["principalId"])
    headers = api.sign_in(reader)
    data = _query(api, INSTANCES, headers).json()["data"]
    assert {d["resourceGroup"] for d in data} == {"graph-b"}
    nobody = api.sign_in(api.principal(f"graph-none-{uuid.uuid4().hex[:6]}"))
    r = _query(api, INSTANCES, nobody)
    assert r.status_code == 200
    assert r.json()["data"] == []


@pytest.mark.parametrize(
    "query",
    [
        "Resources | project name",
        "RecoveryServicesResources",
        "RecoveryServicesResources | where type =~ 'microsoft.compute/virtualmachines'",
        "resources | where type =~ 'microsoft.dataprotection/backupvaults/backupinstances'",
        VAULTS + " | extend x = properties.secret",
        INSTANCES + " | where name == 'one'",
        INSTANCES + " | take 1",
        JOBS.replace("properties.status", "properties.statusX"),
    ],
)
def test_other_query_shapes_are_400(api: Api, world: Any, query: str) -> None:
    r = _query(api, query)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "InvalidQuery"
