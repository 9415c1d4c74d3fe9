"""The official Azure SDKs, unchanged, against a live `pgvault serve`.

The resources Azure keeps outside Data Protection (the PostgreSQL server, the key
vault and its secrets, the storage account and container) are registered through
plain HTTP calls to their ARM-shaped endpoints. The admin creates the vault and the
policy with azure-mgmt-dataprotection and grants the vault's managed identity what it
needs with azure-mgmt-authorization (role definitions looked up by name, assignments
created, listed and deleted). Protection, backups and restores then run with the
DataProtection SDK under a service principal holding only Backup Operator on the
resource group; a Backup Reader service principal can look but not act.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.models import RoleAssignmentCreateParameters
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
    admin: DataProtectionMgmtClient
    authz: AuthorizationManagementClient
    operator: DataProtectionMgmtClient
    reader: DataProtectionMgmtClient
    identity: str
    source_secret: str
    restorer_secret: str
    container_url: str
    server_id: str
    kv_id: str
    container_id: str
    vault_id: str
    #: assignment name -> (role name, scope) of the vault identity's grants.
    grants: dict[str, tuple[str, str]]


def _dp_client(srv: PgvaultServer, sub: str, token: str | None) -> DataProtectionMgmtClient:
    return DataProtectionMgmtClient(
        UnusedCredential(),  # type: ignore[arg-type]
        sub,
        base_url=srv.url,
        authentication_policy=StaticBearer(token),
        polling_interval=1,
    )


def _role_id(authz: AuthorizationManagementClient, scope: str, name: str) -> str:
    """A role definition's id, found by name as the Azure docs do it."""
    found = list(authz.role_definitions.list(scope, filter=f"roleName eq '{name}'"))
    assert [d.role_name for d in found] == [name], found
    role_id: str = found[0].id
    assert role_id.endswith(f"/providers/Microsoft.Authorization/roleDefinitions/{found[0].name}")
    return role_id


def _assign(authz: AuthorizationManagementClient, scope: str, role: str, principal_id: str) -> str:
    """Create a role assignment through the SDK; returns its name (a new GUID)."""
    name = str(uuid.uuid4())
    role_id = _role_id(authz, scope, role)
    created = authz.role_assignments.create(
        scope,
        name,
        RoleAssignmentCreateParameters(role_definition_id=role_id, principal_id=principal_id),
    )
    assert created.name == name
    assert created.principal_id == principal_id
    assert created.scope == scope
    assert created.role_definition_id.rsplit("/", 1)[-1] == role_id.rsplit("/", 1)[-1]
    assert created.id == f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"
    return name


def _service_principal(srv: PgvaultServer, name: str) -> tuple[str, str]:
    """Create a service principal with the CLI (as the admin): (principal id, token)."""
    created = srv.cli_json("principal", "create", "--name", name, "--type", "service-principal")
    assert set(created) == {"principalId", "clientId", "secret"}, created
    return created["principalId"], srv.client_token(created["clientId"], created["secret"])


@pytest.fixture(scope="module")
def sdk(pgvault_module_server: PgvaultServer, source_pg: PgCluster) -> Iterator[Setup]:
    srv = pgvault_module_server
    token = srv.token()
    arm = Arm(srv.url, token, srv.subscription())

    server_id = f"{arm.rg}/providers/Microsoft.DBforPostgreSQL/servers/src"
    arm.call(
        "PUT",
        server_id,
        {
            "location": REGION,
            "properties": {"fullyQualifiedDomainName": "127.0.0.1", "port": source_pg.port},
        },
    )
    kv_id = arm.call(
        "PUT", f"{arm.rg}/providers/Microsoft.KeyVault/vaults/kv1", {"location": REGION}
    )["id"]
    source_secret = arm.call(
        "PUT", f"{kv_id}/secrets/src", {"properties": {"value": superuser_connstr(source_pg)}}
    )["properties"]["secretUri"]
    restorer_secret = arm.call(
        "PUT", f"{kv_id}/secrets/restorer", {"properties": {"value": restorer_connstr(source_pg)}}
    )["properties"]["secretUri"]
    sa = f"{arm.rg}/providers/Microsoft.Storage/storageAccounts/sa1"
    files_dir = srv.home.parent / "storage-sa1"
    arm.call(
        "PUT",
        sa,
        {"location": REGION, "properties": {"backend": {"type": "local", "path": str(files_dir)}}},
    )
    container = arm.call("PUT", f"{sa}/blobServices/default/containers/dumps", {})

    admin = _dp_client(srv, arm.subscription, token)
    authz = AuthorizationManagementClient(
        UnusedCredential(),  # type: ignore[arg-type]
        arm.subscription,
        base_url=srv.url,
        authentication_policy=StaticBearer(token),
    )
    vault_id = f"{arm.rg}/providers/Microsoft.DataProtection/backupVaults/{VAULT}"

    # -- the admin creates the vault and its policy (a Backup Operator may not) -----------
    vault = admin.backup_vaults.begin_create_or_update(
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
    identity = vault.identity.principal_id
    assert identity
    policy = admin.backup_policies.create_or_update(
        RG,
        VAULT,
        POLICY,
        m.BaseBackupPolicyResource(properties=m.BackupPolicy(datasource_types=[DS_TYPE])),
    )
    assert policy.name == POLICY

    # -- the vault identity's grants, each on exactly the resource it touches -------------
    grants = {}
    for role, scope in (
        ("Reader", server_id),
        ("Key Vault Secrets User", kv_id),
        ("Storage Blob Data Contributor", container["id"]),
    ):
        grants[_assign(authz, scope, role, identity)] = (role, scope)

    # -- service principals for the people who run backups, and who only look ------------
    operator_id, operator_token = _service_principal(srv, "backup-operator")
    reader_id, reader_token = _service_principal(srv, "backup-reader")
    _assign(authz, arm.rg, "Backup Operator", operator_id)
    _assign(authz, arm.rg, "Backup Reader", reader_id)

    operator = _dp_client(srv, arm.subscription, operator_token)
    reader = _dp_client(srv, arm.subscription, reader_token)
    with admin, authz, operator, reader:
        yield Setup(
            srv,
            arm,
            admin,
            authz,
            operator,
            reader,
            identity,
            source_secret,
            restorer_secret,
            container["properties"]["url"],
            server_id,
            kv_id,
            container["id"],
            vault_id,
            grants,
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


def _instance(s: Setup, database: str) -> m.BackupInstance:
    return m.BackupInstance(
        object_type="BackupInstance",
        friendly_name=f"src\\{database}",
        data_source_info=m.Datasource(
            object_type="Datasource",
            resource_id=f"{s.server_id}/databases/{database}",
            resource_name=database,
            resource_type=DS_TYPE,
            datasource_type=DS_TYPE,
            resource_location=REGION,
        ),
        data_source_set_info=m.DatasourceSet(
            object_type="DatasourceSet",
            resource_id=s.server_id,
            resource_name="src",
            resource_type="Microsoft.DBforPostgreSQL/servers",
            datasource_type=DS_TYPE,
            resource_location=REGION,
        ),
        policy_info=m.PolicyInfo(policy_id=f"{s.vault_id}/backupPolicies/{POLICY}"),
        datasource_auth_credentials=_secret_creds(s.source_secret),
    )


def _adhoc(client: DataProtectionMgmtClient, instance: str) -> Any:
    return client.backup_instances.begin_adhoc_backup(
        RG,
        VAULT,
        instance,
        m.TriggerBackupRequest(
            backup_rule_options=m.AdHocBackupRuleOptions(
                rule_name="BackupWeekly",
                trigger_option=m.AdhocBackupTriggerOption(retention_tag_override="Default"),
            )
        ),
    )


def test_authorization_sdk_round_trip(sdk: Setup) -> None:
    """The grants made with azure-mgmt-authorization list back, and create/get/delete work."""
    a = sdk.authz
    listed = list(a.role_assignments.list_for_scope(sdk.arm.rg))
    mine = {x.name: x for x in listed if x.principal_id == sdk.identity}
    assert set(mine) == set(sdk.grants), listed
    for name, (role, scope) in sdk.grants.items():
        assert mine[name].scope == scope
        assert (
            mine[name].role_definition_id.rsplit("/", 1)[-1]
            == (_role_id(a, scope, role).rsplit("/", 1)[-1])
        )
        assert mine[name].principal_type == "ServicePrincipal"  # as Azure lists a managed identity
    # Filtered by principal, as `az role assignment list --assignee` does.
    only = list(
        a.role_assignments.list_for_scope(sdk.arm.rg, filter=f"principalId eq '{sdk.identity}'")
    )
    assert {x.name for x in only} == set(sdk.grants)

    # An extra assignment: create, read back, delete, gone.
    name = _assign(a, sdk.vault_id, "Backup Reader", sdk.identity)
    assert a.role_assignments.get(sdk.vault_id, name).principal_id == sdk.identity
    assert name in {x.name for x in a.role_assignments.list_for_scope(sdk.vault_id)}
    deleted = a.role_assignments.delete(sdk.vault_id, name)
    assert deleted is not None
    assert deleted.name == name
    assert name not in {x.name for x in a.role_assignments.list_for_scope(sdk.vault_id)}
    with pytest.raises(ResourceNotFoundError):
        a.role_assignments.get(sdk.vault_id, name)

    # The same principal, role and scope under a second name is a conflict, as in Azure.
    role, scope = next(iter(sdk.grants.values()))
    with pytest.raises(HttpResponseError) as caught:
        a.role_assignments.create(
            scope,
            str(uuid.uuid4()),
            RoleAssignmentCreateParameters(
                role_definition_id=_role_id(a, scope, role), principal_id=sdk.identity
            ),
        )
    assert caught.value.status_code == 409
    assert caught.value.error is not None
    assert caught.value.error.code == "RoleAssignmentExists"


def _assert_denied(caught: pytest.ExceptionInfo[HttpResponseError], action: str) -> None:
    assert caught.value.status_code == 403, caught.value
    assert caught.value.error is not None
    assert caught.value.error.code == "AuthorizationFailed"
    assert action in caught.value.error.message


def test_sdk_backup_and_restore_flow_as_backup_operator(sdk: Setup, source_pg: PgCluster) -> None:
    c = sdk.operator

    # A Backup Operator may not manage policies.
    with pytest.raises(HttpResponseError) as caught:
        c.backup_policies.create_or_update(
            RG,
            VAULT,
            "mine",
            m.BaseBackupPolicyResource(properties=m.BackupPolicy(datasource_types=[DS_TYPE])),
        )
    _assert_denied(caught, "Microsoft.DataProtection/backupVaults/backupPolicies/write")

    instance = _instance(sdk, SOURCE_DB)
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
        started = _adhoc(c, INSTANCE).result()
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
    assert sorted(p.name for p in written.iterdir()) == ["shop", "shop.manifest.json"]
    assert (written / "shop" / "toc.dat").is_file()

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
    with pytest.raises(HttpResponseError) as failed:
        c.backup_instances.begin_validate_for_restore(
            RG, VAULT, INSTANCE, m.ValidateRestoreRequestObject(restore_request_object=existing)
        ).result()
    assert failed.value.error is not None
    assert failed.value.error.code == "UserErrorDatabaseNameAlreadyInUse"


@pytest.fixture
def tiny_backed_up(sdk: Setup, source_pg: PgCluster) -> tuple[str, str]:
    """A second database, protected and backed up once by the admin: (instance, point)."""
    source_pg.create_database("tiny")
    source_pg.execute(
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)", dbname="tiny"
    )
    name = "tiny-sdk"
    instance = _instance(sdk, "tiny")
    sdk.admin.backup_instances.begin_create_or_update(
        RG, VAULT, name, m.BackupInstanceResource(properties=instance)
    ).result()
    job = _wait_job(sdk.admin, _adhoc(sdk.admin, name).result().job_id)
    assert job.properties.status == "Completed", job.properties.error_details
    point = job.properties.extended_info.source_recover_point.recovery_point_id
    return name, point


def test_backup_reader_can_look_but_not_act(
    sdk: Setup, source_pg: PgCluster, tiny_backed_up: tuple[str, str]
) -> None:
    name, point = tiny_backed_up
    c = sdk.reader
    assert point in [p.name for p in c.recovery_points.list(RG, VAULT, name)]
    jobs = list(c.jobs.list(RG, VAULT))
    assert any(j.properties.backup_instance_id.endswith(f"/backupInstances/{name}") for j in jobs)
    assert c.backup_instances.get(RG, VAULT, name).name == name

    with pytest.raises(HttpResponseError) as caught:
        _adhoc(c, name)
    _assert_denied(caught, "Microsoft.DataProtection/backupVaults/backupInstances/backup/action")

    with pytest.raises(HttpResponseError) as caught:
        c.backup_instances.begin_trigger_restore(
            RG, VAULT, name, _db_restore_request(sdk, point, "tiny_by_reader")
        )
    _assert_denied(caught, "Microsoft.DataProtection/backupVaults/backupInstances/restore/action")
    assert not source_pg.database_exists("tiny_by_reader")

    # Nothing ran on the reader's behalf.
    assert len(list(c.jobs.list(RG, VAULT))) == len(jobs)


def test_sdk_without_token_gets_401(sdk: Setup) -> None:
    resp = httpx.get(f"{sdk.server.url}/subscriptions", params={"api-version": "2025-07-01"})
    assert resp.status_code == 401
    assert resp.json()["error"]["code"]

    anonymous = _dp_client(sdk.server, sdk.arm.subscription, None)
    with anonymous, pytest.raises(ClientAuthenticationError) as caught:
        list(anonymous.backup_vaults.get_in_resource_group(RG))
    assert caught.value.status_code == 401

    # The same call with a token works.
    assert [v.name for v in sdk.admin.backup_vaults.get_in_resource_group(RG)] == [VAULT]
