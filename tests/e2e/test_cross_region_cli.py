"""Cross-region restore through the CLI against a real `pgvault serve`: a geo-redundant
vault with Cross Region Restore, points replicated to westus (the default second local
datastore under PGVAULT_HOME), the secondary views, a restore there, and job cancel."""

from __future__ import annotations

import time
from typing import Any

from azure.mgmt.dataprotection import models as m

from tests.e2e.conftest import (
    HOST,
    SOURCE_DB,
    PgvaultServer,
    restorer_connstr,
    superuser_connstr,
)
from tests.e2e.test_sdk import DS_TYPE, _dp_client
from tests.support.pg import PgCluster
from tests.support.sampledb import assert_same_data, snapshot

VAULT, INSTANCE = "geo1", "shop1"


def _secondary_points(srv: PgvaultServer) -> list[Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        points = srv.cli_json(
            "recovery-point", "list", "--vault-name", VAULT, "--instance", INSTANCE,
            "--secondary-region", "westus",
        )["value"]  # fmt: skip
        if points:
            return list(points)
        time.sleep(0.2)
    raise AssertionError("no recovery point reached westus in 60 s")


def test_cross_region_restore_with_the_cli(
    pgvault_module_server: PgvaultServer, source_pg: PgCluster
) -> None:
    srv = pgvault_module_server
    port = str(source_pg.port)
    srv.cli_json(
        "server", "add", "--name", "east1", "--host", HOST, "--port", port, "--region", "eastus"
    )
    srv.cli_json(
        "server", "add", "--name", "west1", "--host", HOST, "--port", port, "--region", "westus"
    )
    srv.cli_json("keyvault", "create", "--name", "kv1", "--region", "eastus")
    secret = {
        name: srv.cli_json(
            "keyvault", "secret", "set", "--vault-name", "kv1", "--name", name, input=value
        )["properties"]["secretUri"]
        for name, value in (("src", superuser_connstr(source_pg)), ("rst", restorer_connstr(source_pg)))
    }  # fmt: skip
    refused = srv.cli("vault", "create", "--name", "lrs", "--region", "eastus",
                      "--cross-region-restore", check=False)  # fmt: skip
    assert refused.returncode == 1
    assert "UserErrorCrossRegionRestoreNeedsGeoRedundancy" in refused.stderr
    srv.cli_json(
        "vault", "create", "--name", VAULT, "--region", "eastus",
        "--storage-redundancy", "GeoRedundant", "--cross-region-restore",
    )  # fmt: skip
    rg = f"/subscriptions/{srv.subscription()}/resourceGroups/default"
    srv.grant(f"vault:{VAULT}", "Reader", rg)
    srv.grant(f"vault:{VAULT}", "Key Vault Secrets User", rg)
    srv.cli_json("policy", "create", "--vault-name", VAULT, "--name", "weekly")
    srv.cli_json(
        "instance", "create", "--vault-name", VAULT, "--server", "east1", "--database", SOURCE_DB,
        "--policy", "weekly", "--secret", secret["src"], "--name", INSTANCE,
    )  # fmt: skip
    job = srv.cli_json("backup", "now", "--vault-name", VAULT, "--instance", INSTANCE, "--wait")
    assert job["properties"]["status"] == "Completed"

    [point] = _secondary_points(srv)
    assert point["properties"]["region"] == "westus"
    assert point["properties"]["replicationLagSeconds"] >= 0
    [seen] = srv.cli_json("instance", "list-secondary", "--region", "westus")["value"]
    assert seen["properties"]["replication"]["replicatedPoints"] == 1
    assert seen["properties"]["primaryDatastoreStatus"] == "Available"

    restore = [
        "restore", "database", "--vault-name", VAULT, "--instance", INSTANCE,
        "--recovery-point", point["name"], "--secret", secret["rst"], "--secondary-region", "westus",
    ]  # fmt: skip
    to_primary = srv.cli(*restore, "--target-server", "east1", "--target-database", "crr_no",
                         check=False)  # fmt: skip
    assert to_primary.returncode == 1
    assert "UserErrorCrossRegionRestoreToPrimaryNotSupported" in to_primary.stderr
    done = srv.cli_json(
        *restore, "--target-server", "west1", "--target-database", "crr_cli", "--wait"
    )
    assert done["properties"]["status"] == "Completed", done["properties"]["errorDetails"]
    assert_same_data(
        snapshot(source_pg.admin_dsn(SOURCE_DB)), snapshot(source_pg.admin_dsn("crr_cli"))
    )

    [listed] = srv.cli_json("job", "list", "--vault-name", VAULT, "--secondary-region", "westus")[
        "value"
    ]
    assert listed["name"] == done["name"]
    again = srv.cli("job", "cancel", done["name"], "--vault-name", VAULT, check=False)
    assert again.returncode == 1
    assert "JobAlreadyFinished" in again.stderr


def _sdk_request(srv: PgvaultServer, point: str, database: str, secret: str) -> Any:
    rg = f"/subscriptions/{srv.subscription()}/resourceGroups/default"
    server_id = f"{rg}/providers/Microsoft.DBforPostgreSQL/servers/west1"
    return m.AzureBackupRecoveryPointBasedRestoreRequest(
        recovery_point_id=point,
        source_data_store_type="VaultStore",
        restore_target_info=m.RestoreTargetInfo(
            recovery_option="FailIfExists",
            restore_location="westus",
            datasource_info=m.Datasource(
                object_type="Datasource",
                resource_id=f"{server_id}/databases/{database}",
                resource_name=database,
                resource_type=DS_TYPE,
                datasource_type=DS_TYPE,
            ),
            datasource_set_info=m.DatasourceSet(
                object_type="DatasourceSet", resource_id=server_id, datasource_type=DS_TYPE
            ),
            datasource_auth_credentials=m.SecretStoreBasedAuthCredentials(
                secret_store_resource=m.SecretStoreResource(
                    secret_store_type="AzureKeyVault", uri=secret
                )
            ),
        ),
    )


def test_the_official_sdk_restores_in_the_secondary_region(
    pgvault_module_server: PgvaultServer, source_pg: PgCluster
) -> None:
    srv = pgvault_module_server
    sub = srv.subscription()
    client = _dp_client(srv, sub, srv.token())
    vault_id = f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.DataProtection/backupVaults/{VAULT}"
    bi_id = f"{vault_id}/backupInstances/{INSTANCE}"
    points = list(
        client.fetch_secondary_recovery_points.list(
            "default",
            "westus",
            m.FetchSecondaryRPsRequestParameters(
                source_region="eastus", source_backup_instance_id=bi_id
            ),
        )
    )
    assert len(points) == 1
    point = points[0].name
    uri = srv.cli_json(
        "keyvault", "secret", "set", "--vault-name", "kv1", "--name", "rst2",
        input=restorer_connstr(source_pg),
    )["properties"]["secretUri"]  # fmt: skip
    details = m.CrossRegionRestoreDetails(source_region="eastus", source_backup_instance_id=bi_id)
    req = _sdk_request(srv, point, "crr_sdk", uri)
    client.backup_instances.begin_validate_cross_region_restore(
        "default",
        "westus",
        m.ValidateCrossRegionRestoreRequestObject(
            restore_request_object=req, cross_region_restore_details=details
        ),
    ).result()
    started = client.backup_instances.begin_trigger_cross_region_restore(
        "default",
        "westus",
        m.CrossRegionRestoreRequestObject(
            restore_request_object=req, cross_region_restore_details=details
        ),
    ).result()
    job_id = started.job_id.rsplit("/", 1)[-1]
    query = m.CrossRegionRestoreJobRequest(
        source_region="eastus", source_backup_vault_id=vault_id, job_id=job_id
    )
    deadline = time.monotonic() + 120
    while (
        job := client.fetch_cross_region_restore_job.get("default", "westus", query)
    ).properties.status == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert job.properties.status == "Completed", job.properties.error_details
    assert_same_data(
        snapshot(source_pg.admin_dsn(SOURCE_DB)), snapshot(source_pg.admin_dsn("crr_sdk"))
    )
    listed = client.fetch_cross_region_restore_jobs.list(
        "default",
        "westus",
        m.CrossRegionRestoreJobsRequest(source_region="eastus", source_backup_vault_id=vault_id),
    )
    assert job_id in {j.name for j in listed}
