"""Integration fixtures: the real service layer with in-process workers, over real backends.

`vault` gives a running pgvault (service + worker pool) whose metadata lives in
SQLite and, in a second run of each test, in PostgreSQL; its datastore is a local
directory unless a test asks for S3 (moto) or Azure Blob (Azurite).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pgvault import jobs
from pgvault.config import Settings
from pgvault.context import Context
from pgvault.errors import PgVaultError
from pgvault.jobkinds.restore import DatabaseTarget, FilesTarget, RestoreRequest
from pgvault.secrets import secret_uri
from pgvault.services import InstanceSpec, Service
from pgvault.workers import WorkerPool
from tests.support.pg import PgCluster
from tests.support.services import AzuriteEndpoint, S3Endpoint, azurite_blob, moto_s3

RG = "default"
REGION = "eastus"


@pytest.fixture(scope="session")
def pg_metadata() -> Iterator[PgCluster]:
    cluster = PgCluster.start("metadata")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Endpoint]:
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteEndpoint]:
    with azurite_blob() as endpoint:
        yield endpoint


@pytest.fixture(params=["sqlite", "postgresql"])
def metadata_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """Each test runs once on SQLite metadata and once on PostgreSQL metadata."""
    if request.param == "sqlite":
        yield None
        return
    cluster: PgCluster = request.getfixturevalue("pg_metadata")
    name = f"meta_{uuid.uuid4().hex[:10]}"
    cluster.execute(f'CREATE DATABASE "{name}"')
    yield cluster.superuser_url(name)
    cluster.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@dataclass
class Vault:
    """A running pgvault plus helpers to protect, back up and restore in a few words."""

    service: Service
    ctx: Context
    sub: str
    name: str = "vault1"
    secrets: dict[str, str] = field(default_factory=dict)

    def grant_identity(self, scope: str | None = None) -> None:
        """What Azure asks of a vault's identity, granted on the whole resource group."""
        principal = self.service.get_vault(self.sub, RG, self.name).principal_id
        scope = scope or f"/subscriptions/{self.sub}/resourceGroups/{RG}"
        for role in ("Reader", "Key Vault Secrets User", "Storage Blob Data Contributor"):
            self.service.access.create_assignment(None, scope, role, principal)

    def register(self, cluster: PgCluster, server: str, region: str = REGION) -> None:
        self.service.put_server(self.sub, RG, server, "127.0.0.1", cluster.port, region)

    def secret(self, name: str, value: str) -> str:
        """Store a connection string; returns the secret URI."""
        kv, row = self.service.put_secret(self.sub, RG, "kv1", name, value, None)
        return secret_uri(self.ctx.base_url, kv.name, row.name)

    def admin_secret(self, cluster: PgCluster, name: str = "src") -> str:
        return self.secret(
            name,
            f"Server=127.0.0.1;Port={cluster.port};Database=postgres;User Id=postgres;"
            f"Password={cluster.superuser_password};",
        )

    def protect(self, cluster: PgCluster, database: str, server: str = "src") -> str:
        """Register the server (if needed) and protect `database`; returns the instance name."""
        self.register(cluster, server)
        uri = self.admin_secret(cluster, f"{server}-admin")
        db_id = self.service.get_server(self.sub, RG, server).database_id(database)
        policy_id = f"{self.vault_id}/backupPolicies/weekly"
        spec = InstanceSpec(database_id=db_id, policy_id=policy_id, secret_uri=uri)
        name = f"{server}-{database}"
        self.service.validate_for_backup(self.sub, RG, self.name, spec)
        self.service.put_instance(self.sub, RG, self.name, name, spec)
        return name

    @property
    def vault_id(self) -> str:
        return self.service.get_vault(self.sub, RG, self.name).arm_id

    def wait(self, job_id: str, timeout: float = 120) -> jobs.Job:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            view = self.service.get_job(self.sub, RG, self.name, job_id)
            if view.job.status != jobs.IN_PROGRESS:
                return view.job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish in {timeout}s")

    def backup(self, instance: str) -> jobs.Job:
        job = self.service.adhoc_backup(self.sub, RG, self.name, instance, None, None)
        return self.wait(job.id)

    def latest_point(self, instance: str) -> str:
        _, points = self.service.list_points(self.sub, RG, self.name, instance)
        return points[0].id

    def db_request(self, point: str, server: str, database: str, secret: str) -> RestoreRequest:
        server_id = self.service.get_server(self.sub, RG, server).arm_id
        return RestoreRequest(point, "VaultStore", DatabaseTarget(server_id, database, secret))

    def files_request(self, point: str, url: str, prefix: str) -> RestoreRequest:
        return RestoreRequest(point, "VaultStore", FilesTarget(url, prefix))

    def restore(self, instance: str, req: RestoreRequest) -> jobs.Job:
        job = self.service.trigger_restore(self.sub, RG, self.name, instance, req)
        return self.wait(job.id)

    def validate(self, instance: str, req: RestoreRequest) -> PgVaultError | None:
        try:
            self.service.validate_restore(self.sub, RG, self.name, instance, req)
        except PgVaultError as exc:
            return exc
        return None


def start_vault(settings: Settings) -> tuple[Service, WorkerPool]:
    ctx = Context.create(settings)
    pool = WorkerPool(ctx, 2)
    service = Service(ctx, pool)
    service.bootstrap()
    pool.start()
    return service, pool


@pytest.fixture
def datastore_url(tmp_path: Path) -> str | None:
    """Local datastore by default; tests override this fixture for S3 / Azure."""
    return None


@pytest.fixture
def vault(tmp_path: Path, metadata_url: str | None, datastore_url: str | None) -> Iterator[Vault]:
    settings = Settings(
        home=tmp_path / "home",
        database_url=metadata_url,
        datastore_url=datastore_url,
        public_url="http://127.0.0.1:8080",
        heartbeat_seconds=0.5,
        local_storage_roots=(tmp_path,),
        storage_endpoint_allow=("127.0.0.0/8", "::1"),
    )
    service, pool = start_vault(settings)
    sub = service.list_subscriptions()[0].id
    service.put_keyvault(sub, RG, "kv1", REGION)
    service.put_vault(sub, RG, "vault1", REGION, {}, {})
    service.put_policy(sub, RG, "vault1", "weekly", {})
    v = Vault(service, service.ctx, sub)
    v.grant_identity()
    try:
        yield v
    finally:
        pool.stop()
        service.ctx.db.dispose()
