"""The Cross Region Restore setting, the secondary-region routes and who may call them
(through the in-process app; no PostgreSQL or object store is reached)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.support.apiapp import Api

DP = "providers/Microsoft.DataProtection"
GRS = [{"datastoreType": "VaultStore", "type": "GeoRedundant"}]
CRR_ON = {"crossRegionRestoreSettings": {"state": "Enabled"}}


@pytest.fixture(scope="module")
def vault_id(api: Api) -> str:
    rg = api.rg("default")
    path = f"{rg}/{DP}/backupVaults/crr1"
    body = {"location": "eastus", "properties": {"storageSettings": GRS, "featureSettings": CRR_ON}}
    assert api.put(path, body).status_code in (200, 201)
    return path


def _code(r: Any) -> str:
    return str(r.json()["error"]["code"])


def test_crr_only_on_geo_redundant_vaults_and_never_off(api: Api, vault_id: str) -> None:
    lrs = f"{api.rg('default')}/{DP}/backupVaults/lrs1"
    r = api.put(lrs, {"location": "eastus", "properties": {"featureSettings": CRR_ON}})
    assert r.status_code == 400
    assert _code(r) == "UserErrorCrossRegionRestoreNeedsGeoRedundancy"
    off = {"properties": {"featureSettings": {"crossRegionRestoreSettings": {"state": "Disabled"}}}}
    r = api.call("PATCH", vault_id, off)
    assert r.status_code == 400
    assert _code(r) == "UserErrorCrossRegionRestoreCannotBeDisabled"
    shown = api.get(vault_id).json()["properties"]["featureSettings"]
    assert shown["crossRegionRestoreSettings"]["state"] == "Enabled"


def _jobs(api: Api, region: str, vault_id: str, headers: Any = None) -> Any:
    path = f"{api.rg('default')}/{DP}/locations/{region}/fetchCrossRegionRestoreJobs"
    body = {"sourceRegion": "eastus", "sourceBackupVaultId": vault_id}
    return api.call("POST", path, body, headers)


def test_secondary_jobs_only_in_the_paired_region(api: Api, vault_id: str) -> None:
    r = _jobs(api, "westus", vault_id)
    assert r.status_code == 200, r.text
    assert r.json()["value"] == []
    assert (
        _code(_jobs(api, "eastus", vault_id)) == "UserErrorCrossRegionRestoreToPrimaryNotSupported"
    )
    assert _code(_jobs(api, "centralus", vault_id)) == "UserErrorCrossRegionRestoreRegionNotPaired"


def _restore(api: Api, vault_id: str, headers: Any) -> Any:
    path = f"{api.rg('default')}/{DP}/locations/westus/crossRegionRestore"
    body = {
        "restoreRequestObject": {
            "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
            "recoveryPointId": "0" * 32,
            "sourceDataStoreType": "VaultStore",
            "restoreTargetInfo": {
                "objectType": "RestoreFilesTargetInfo",
                "recoveryOption": "FailIfExists",
                "targetDetails": {
                    "url": "http://127.0.0.1:8080/blob/files1/dumps",
                    "filePrefix": "x",
                    "restoreTargetLocationType": "AzureBlobs",
                },
            },
        },
        "crossRegionRestoreDetails": {
            "sourceRegion": "eastus",
            "sourceBackupInstanceId": f"{vault_id}/backupInstances/missing",
        },
    }
    return api.call("POST", path, body, headers)


def _principal(api: Api, role: str, scope: str) -> dict[str, str]:
    props = api.principal(f"crr-{uuid.uuid4().hex[:8]}")
    api.assign(scope, role, props["principalId"])
    return api.sign_in(props)


def test_permissions_follow_the_seed(api: Api, vault_id: str) -> None:
    sub = f"/subscriptions/{api.sub}"
    operator = _principal(api, "Backup Operator", sub)
    r = _restore(api, vault_id, operator)
    assert r.status_code not in (401, 403), r.text  # past authorization: the instance is missing
    group_operator = _principal(api, "Backup Operator", api.rg("default"))
    r = _restore(api, vault_id, group_operator)
    assert r.status_code == 403
    assert "crossRegionRestore/action" in r.json()["error"]["message"]
    reader = _principal(api, "Backup Reader", sub)
    assert _jobs(api, "westus", vault_id, reader).status_code == 200
    assert _restore(api, vault_id, reader).status_code == 403


def test_cancel_of_an_unknown_job_is_404(api: Api, vault_id: str) -> None:
    r = api.call("POST", f"{vault_id}/backupJobs/{uuid.uuid4()}/cancel")
    assert r.status_code == 404
