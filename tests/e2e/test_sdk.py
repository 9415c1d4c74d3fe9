"""The official azure-mgmt-dataprotection SDK, unchanged, against a live `pgvault serve`.

The resources Azure keeps outside Data Protection (the PostgreSQL server, the key
vault and its secrets, the storage account and container) are registered through
plain HTTP calls to their ARM-shaped endpoints; everything in
Microsoft.DataProtection goes through the SDK, with SDK models as request bodies.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.dataprotection import DataProtectionMgmtClient
from azure.mgmt.dataprotection import models as m

from tests.e2e.conftest import (
    RESTORER,
    SOURCE_DB,
    PgvaultServer,
    restorer_connstr,
    superuser_connstr,
)
from tests.support.pg import PgCluster
from tests.support.sampledb import assert_same_data, snapshot

RG = "default"
REGION = "eastus"
VAULT = "sdkvault"
POLICY = "weekly"
INSTANCE = "shop-sdk"
DS_TYPE = "Microsoft.DBforPostgreSQL/servers/databases"


class StaticBearer(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Sets `Authorization: Bearer TOKEN` (the SDK refuses bearer credentials over http)."""

    def __init__(self, token: str | None) -> None:
        super().__init__()
        self.token = token

    def on_request(self, request: PipelineRequest[Any]) -> None:
        if self.token is not None:
            request.http_request.headers["Authorization"] = f"Bearer {self.token}"


class UnusedCredential:
    """The client wants a credential; the authentication policy above replaces its use."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise AssertionError("the SDK should authenticate through StaticBearer")


@dataclass
class Arm:
    """Plain HTTP calls to the ARM-shaped endpoints, with a bearer token."""

    url: str
    token: str
    subscription: str = ""

    def call(self, method: str, path: str, body: Any = None) -> Any:
        resp = httpx.request(
            method,
            self.url + path,
            params={"api-version": "2025-07-01"},
            headers={"Authorization": f"Bearer {self.token}"},
            json=body,
            timeout=30,
        )
        assert resp.status_code < 300, f"{method} {path} -> {resp.status_code}: {resp.text}"
        return resp.json() if resp.content else None

    @property
    def rg(self) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{RG}"


@dataclass
class Setup:
    server: PgvaultServer
    arm: Arm
    client: DataProtectionMgmtClient
    source_secret: str
    restorer_secret: str
    container_url: str
    server_id: str
    vault_id: str


@pytest.fixture
def sdk(pgvault_server: PgvaultServer, source_pg: PgCluster) -> Iterator[Setup]:
    token = pgvault_server.token()
    arm = Arm(pgvault_server.url, token)
    subs = arm.call("GET", "/subscriptions")["value"]
    defaults = [s for s in subs if s["isDefault"]]
    assert len(defaults) == 1, subs
    arm.subscription = defaults[0]["subscriptionId"]

    server_id = f"{arm.rg}/providers/Microsoft.DBforPostgreSQL/servers/src"
    arm.call(
        "PUT",
        server_id,
        {
            "location": REGION,
            "properties": {"fullyQualifiedDomainName": "127.0.0.1", "port": source_pg.port},
        },
    )
    kv = f"{arm.rg}/providers/Microsoft.KeyVault/vaults/kv1"
    arm.call("PUT", kv, {"location": REGION})
    source_secret = arm.call(
        "PUT", f"{kv}/secrets/src", {"properties": {"value": superuser_connstr(source_pg)}}
    )["properties"]["secretUri"]
    restorer_secret = arm.call(
        "PUT", f"{kv}/secrets/restorer", {"properties": {"value": restorer_connstr(source_pg)}}
    )["properties"]["secretUri"]
    sa = f"{arm.rg}/providers/Microsoft.Storage/storageAccounts/sa1"
    files_dir = pgvault_server.home.parent / "storage-sa1"
    arm.call(
        "PUT",
        sa,
        {"location": REGION, "properties": {"backend": {"type": "local", "path": str(files_dir)}}},
    )
    container = arm.call("PUT", f"{sa}/blobServices/default/containers/dumps", {})
    container_url = container["properties"]["url"]

    client = DataProtectionMgmtClient(
        UnusedCredential(),  # type: ignore[arg-type]
        arm.subscription,
        base_url=pgvault_server.url,
        authentication_policy=StaticBearer(token),
        polling_interval=1,
    )
    vault_id = f"{arm.rg}/providers/Microsoft.DataProtection/backupVaults/{VAULT}"
    with client:
        yield Setup(
            pgvault_server,
            arm,
            client,
            source_secret,
            restorer_secret,
            container_url,
            server_id,
            vault_id,
        )


def _secret_creds(uri: str) -> m.SecretStoreBasedAuthCredentials:
    return m.SecretStoreBasedAuthCredentials(
        secret_store_resource=m.SecretStoreResource(secret_store_type="AzureKeyVault", uri=uri)
    )


def _wait_job(client: DataProtectionMgmtClient, job_arm_id: str, timeout: float = 60) -> Any:
    """Poll jobs.get until the job leaves InProgress."""
    job_id = job_arm_id.rstrip("/").rsplit("/", 1)[-1]
    deadline = time.monotonic() + timeout
    while True:
        job = client.jobs.get(RG, VAULT, job_id)
        if job.properties.status not in ("InProgress", "Started", "NotStarted"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job.properties.status}"
        time.sleep(0.5)


def _db_restore_request(s: Setup, point: str, database: str) -> m.AzureBackupRestoreRequest:
    return m.AzureBackupRecoveryPointBasedRestoreRequest(
        recovery_point_id=point,
        source_data_store_type="VaultStore",
        restore_target_info=m.RestoreTargetInfo(
            recovery_option="FailIfExists",
            restore_location=REGION,
            datasource_info=m.Datasource(
                object_type="Datasource",
                resource_id=f"{s.server_id}/databases/{database}",
                resource_name=database,
                resource_type=DS_TYPE,
                datasource_type=DS_TYPE,
            ),
            datasource_set_info=m.DatasourceSet(
                object_type="DatasourceSet",
                resource_id=s.server_id,
                resource_name="src",
                datasource_type=DS_TYPE,
            ),
            datasource_auth_credentials=_secret_creds(s.restorer_secret),
        ),
    )


def test_sdk_backup_and_restore_flow(sdk: Setup, source_pg: PgCluster) -> None:
    c = sdk.client

    vault = c.backup_vaults.begin_create_or_update(
        RG,
        VAULT,
        m.BackupVaultResource(
            location=REGION,
            identity=m.DppIdentityDetails(type="SystemAssigned"),
            properties=m.BackupVault(
                storage_settings=[
                    m.StorageSetting(datastore_type="VaultStore", type="LocallyRedundant")
                ]
            ),
        ),
    ).result()
    assert vault.name == VAULT
    assert vault.properties.provisioning_state == "Succeeded"
    assert vault.identity.principal_id

    policy = c.backup_policies.create_or_update(
        RG,
        VAULT,
        POLICY,
        m.BaseBackupPolicyResource(properties=m.BackupPolicy(datasource_types=[DS_TYPE])),
    )
    assert policy.name == POLICY

    instance = m.BackupInstance(
        object_type="BackupInstance",
        friendly_name=f"src\\{SOURCE_DB}",
        data_source_info=m.Datasource(
            object_type="Datasource",
            resource_id=f"{sdk.server_id}/databases/{SOURCE_DB}",
            resource_name=SOURCE_DB,
            resource_type=DS_TYPE,
            datasource_type=DS_TYPE,
            resource_location=REGION,
        ),
        data_source_set_info=m.DatasourceSet(
            object_type="DatasourceSet",
            resource_id=sdk.server_id,
            resource_name="src",
            resource_type="Microsoft.DBforPostgreSQL/servers",
            datasource_type=DS_TYPE,
            resource_location=REGION,
        ),
        policy_info=m.PolicyInfo(policy_id=f"{sdk.vault_id}/backupPolicies/{POLICY}"),
        datasource_auth_credentials=_secret_creds(sdk.source_secret),
    )
    c.backup_instances.begin_validate_for_backup(
        RG, VAULT, m.ValidateForBackupRequest(backup_instance=instance)
    ).result()
    bi = c.backup_instances.begin_create_or_update(
        RG, VAULT, INSTANCE, m.BackupInstanceResource(properties=instance)
    ).result()
    assert bi.name == INSTANCE
    assert bi.properties.data_source_info.resource_name == SOURCE_DB

    # -- two on-demand backups -----------------------------------------------------------
    backup_jobs = []
    for _ in range(2):
        started = c.backup_instances.begin_adhoc_backup(
            RG,
            VAULT,
            INSTANCE,
            m.TriggerBackupRequest(
                backup_rule_options=m.AdHocBackupRuleOptions(
                    rule_name="BackupWeekly",
                    trigger_option=m.AdhocBackupTriggerOption(retention_tag_override="Default"),
                )
            ),
        ).result()
        assert started.job_id, started
        job = _wait_job(c, started.job_id)
        assert job.properties.status == "Completed", job.properties.error_details
        assert job.properties.operation == "Backup"
        backup_jobs.append(job)
    newest = backup_jobs[1].properties.extended_info.source_recover_point.recovery_point_id
    assert newest

    points = list(c.recovery_points.list(RG, VAULT, INSTANCE))
    assert len(points) == 2
    assert points[0].name == newest  # latest first
    assert points[0].properties.recovery_point_time >= points[1].properties.recovery_point_time
    point = points[0].name
    assert points[0].properties.recovery_point_id == point

    # -- restore as a database (validate first, as the portal does) -------------------
    request = _db_restore_request(sdk, point, "shop_sdk_restored")
    c.backup_instances.begin_validate_for_restore(
        RG, VAULT, INSTANCE, m.ValidateRestoreRequestObject(restore_request_object=request)
    ).result()
    restored = c.backup_instances.begin_trigger_restore(RG, VAULT, INSTANCE, request).result()
    db_job = _wait_job(c, restored.job_id)
    assert db_job.properties.status == "Completed", db_job.properties.error_details
    assert_same_data(
        snapshot(source_pg.admin_dsn(SOURCE_DB)), snapshot(source_pg.admin_dsn("shop_sdk_restored"))
    )
    owners = source_pg.query(
        "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname NOT IN "
        "('pg_catalog', 'information_schema')",
        dbname="shop_sdk_restored",
    )
    assert owners == [(RESTORER,)]

    # -- restore as files --------------------------------------------------------------
    files_request = m.AzureBackupRecoveryPointBasedRestoreRequest(
        recovery_point_id=point,
        source_data_store_type="VaultStore",
        restore_target_info=m.RestoreFilesTargetInfo(
            recovery_option="FailIfExists",
            restore_location=REGION,
            target_details=m.TargetDetails(
                url=sdk.container_url,
                file_prefix="sdk/shop",
                restore_target_location_type="AzureBlobs",
            ),
        ),
    )
    c.backup_instances.begin_validate_for_restore(
        RG, VAULT, INSTANCE, m.ValidateRestoreRequestObject(restore_request_object=files_request)
    ).result()
    files = c.backup_instances.begin_trigger_restore(RG, VAULT, INSTANCE, files_request).result()
    files_job = _wait_job(c, files.job_id)
    assert files_job.properties.status == "Completed", files_job.properties.error_details
    written = sdk.server.home.parent / "storage-sa1" / "dumps" / "sdk"
    assert sorted(p.name for p in written.iterdir()) == ["shop.dump", "shop.manifest.json"]

    # -- the job list holds them all ---------------------------------------------------
    listed = {j.name: j for j in c.jobs.list(RG, VAULT)}
    for job in (*backup_jobs, db_job, files_job):
        assert job.name in listed
        assert listed[job.name].properties.status == "Completed"
    assert sorted(listed[j.name].properties.operation for j in (db_job, files_job)) == [
        "Restore",
        "Restore",
    ]

    # -- a restore into an existing database fails validation with Azure's code ---------
    existing = _db_restore_request(sdk, point, "shop_sdk_restored")
    with pytest.raises(HttpResponseError) as caught:
        c.backup_instances.begin_validate_for_restore(
            RG, VAULT, INSTANCE, m.ValidateRestoreRequestObject(restore_request_object=existing)
        ).result()
    assert caught.value.error is not None
    assert caught.value.error.code == "UserErrorDatabaseNameAlreadyInUse"


def test_sdk_without_token_gets_401(sdk: Setup) -> None:
    resp = httpx.get(f"{sdk.server.url}/subscriptions", params={"api-version": "2025-07-01"})
    assert resp.status_code == 401
    assert resp.json()["error"]["code"]

    anonymous = DataProtectionMgmtClient(
        UnusedCredential(),  # type: ignore[arg-type]
        sdk.arm.subscription,
        base_url=sdk.server.url,
        authentication_policy=StaticBearer(None),
        polling_interval=1,
    )
    with anonymous, pytest.raises(ClientAuthenticationError) as caught:
        list(anonymous.backup_vaults.get_in_resource_group(RG))
    assert caught.value.status_code == 401

    # The same call with the token works (an empty list: no vault yet).
    assert list(sdk.client.backup_vaults.get_in_resource_group(RG)) == []
