"""A pgvault on simulated time: the real service, worker pool and datastores, with a FrozenClock.

Tests drive time with `advance()`, run the scheduler and the housekeeping sweep
themselves, and wait for the real backups/restores the workers run (`drain()`).
Everything else is real: PostgreSQL sources and targets, pg_dump/pg_restore, the
metadata database (SQLite or PostgreSQL) and local directories as VaultStore and
ArchiveStore.
"""

from __future__ import annotations

import contextlib
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from pgvault import housekeeping, jobs, recovery_points
from pgvault.clock import FrozenClock
from pgvault.config import Settings
from pgvault.context import Context
from pgvault.engine.manifest import MANIFEST
from pgvault.recovery_points import RecoveryPoint
from pgvault.services import InstanceSpec, Service
from pgvault.storage.backends import Location
from pgvault.workers import WorkerPool
from tests.integration.conftest import REGION, RG, Vault
from tests.support.pg import PgCluster

#: A Wednesday, so the first weekly (Sunday) slot is a few days after protection.
START = datetime(2024, 1, 3, 12, 0, tzinfo=UTC)
POLICY = "p1"


@contextlib.contextmanager
def fresh_pg_database(cluster: PgCluster) -> Iterator[str]:
    """A new, empty metadata database on `cluster` (dropped afterwards); yields its URL."""
    name = f"meta_{uuid.uuid4().hex[:10]}"
    cluster.execute(f'CREATE DATABASE "{name}"')
    try:
        yield cluster.superuser_url(name)
    finally:
        cluster.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def tiny_database(cluster: PgCluster, prefix: str = "tiny") -> str:
    """A database of one small table: pg_dump takes a blink, so months of backups stay cheap."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    cluster.create_database(name)
    cluster.execute(
        "CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);"
        " INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 20) AS g",
        dbname=name,
    )
    return name


def settings_for(
    home: Path,
    *,
    metadata_url: str | None = None,
    datastore: Path | None = None,
    archive: Path | None = None,
    master_key: str | None = None,
    stale_after_seconds: float = 30.0,
) -> Settings:
    """Settings for one test pgvault (`stale_after_seconds`: raise it when a test moves the
    simulated clock while a job runs, or the heartbeat sweep sees the jump as a dead worker)."""
    return Settings(
        home=home,
        database_url=metadata_url,
        datastore_url=datastore.as_uri() if datastore else None,
        archive_url=archive.as_uri() if archive else None,
        master_key=master_key,
        public_url="http://127.0.0.1:8080",
        heartbeat_seconds=0.5,
        stale_after_seconds=stale_after_seconds,
        local_storage_roots=(home.parent,),
        storage_endpoint_allow=("127.0.0.0/8", "::1"),
    )


def new_master_key() -> str:
    return secrets.token_hex(32)


@dataclass
class ClockedVault:
    """One pgvault "process": a Context on a FrozenClock, its Service and its WorkerPool."""

    helper: Vault
    clock: FrozenClock
    pool: WorkerPool | None
    workers: int = 2

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def ctx(self) -> Context:
        return self.helper.ctx

    @property
    def service(self) -> Service:
        return self.helper.service

    @property
    def sub(self) -> str:
        return self.helper.sub

    @property
    def name(self) -> str:
        return self.helper.name

    def now(self) -> datetime:
        return self.clock.now()

    def advance(self, delta: timedelta) -> None:
        self.clock.advance(delta)

    def start_workers(self) -> None:
        if self.pool is None:
            self.pool = WorkerPool(self.ctx, self.workers)
            self.service.pool = self.pool
            self.pool.start()

    def stop_workers(self) -> None:
        if self.pool is not None:
            self.pool.stop()
            self.pool = None
            self.service.pool = None

    def close(self) -> None:
        self.stop_workers()
        self.ctx.db.dispose()

    # -- setup ------------------------------------------------------------------------------

    def create_vault(self, policy: dict[str, Any]) -> None:
        """Key vault, backup vault, the policy `p1` and the vault identity's roles."""
        self.service.put_keyvault(self.sub, RG, "kv1", REGION)
        self.service.put_vault(self.sub, RG, self.name, REGION, {}, {})
        self.service.put_policy(self.sub, RG, self.name, POLICY, policy)
        self.helper.grant_identity()

    def protect(self, cluster: PgCluster, database: str, server: str = "src") -> str:
        """Protect `database` with policy `p1`; returns the instance name."""
        self.helper.register(cluster, server)
        uri = self.helper.admin_secret(cluster, f"{server}-admin")
        db_id = self.service.get_server(self.sub, RG, server).database_id(database)
        spec = InstanceSpec(
            database_id=db_id,
            policy_id=f"{self.helper.vault_id}/backupPolicies/{POLICY}",
            secret_uri=uri,
        )
        name = f"{server}-{database}".replace("_", "-")
        self.service.validate_for_backup(self.sub, RG, self.name, spec)
        self.service.put_instance(self.sub, RG, self.name, name, spec)
        return name

    def instance_id(self, name: str) -> str:
        return self.service.get_instance(self.sub, RG, self.name, name).instance.id

    # -- running ----------------------------------------------------------------------------

    def sweep(self) -> dict[str, int]:
        return housekeeping.sweep(self.ctx)

    def drain(self, timeout: float = 120) -> None:
        """Wait (real time) until no job is InProgress: the workers finished what was queued."""
        deadline = time.monotonic() + timeout
        while True:
            with self.ctx.db.session() as s:
                running = s.scalars(
                    select(jobs.Job.id).where(jobs.Job.status == jobs.IN_PROGRESS)
                ).all()
            if not running:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"jobs still running after {timeout}s: {running}")
            time.sleep(0.02)

    def backup(self, instance: str) -> jobs.Job:
        job = self.helper.backup(instance)
        assert job.status == jobs.COMPLETED, (job.error_code, job.error_message)
        return job

    # -- looking ----------------------------------------------------------------------------

    def points(self, instance: str) -> list[RecoveryPoint]:
        """Listed (Committed) points of an instance, oldest first."""
        _, points = self.service.list_points(self.sub, RG, self.name, instance)
        return sorted(points, key=lambda p: p.created_at)

    def all_rows(self) -> list[RecoveryPoint]:
        """Every recovery-point row, whatever its state."""
        with self.ctx.db.session() as s:
            return list(s.scalars(select(RecoveryPoint).order_by(RecoveryPoint.created_at)))

    def jobs(self, operation: str | None = None) -> list[jobs.Job]:
        """Jobs of the vault as `service.list_jobs` shows them, oldest first."""
        views = self.service.list_jobs(self.sub, RG, self.name, limit=10_000)
        found = [v.job for v in views if operation is None or v.job.operation == operation]
        return sorted(found, key=lambda j: (j.created_at, j.id))

    def point(self, point_id: str) -> RecoveryPoint:
        with self.ctx.db.session() as s:
            row = s.get(RecoveryPoint, point_id)
            assert row is not None, f"no row for point {point_id}"
            return row

    def vault_tier(self, point: RecoveryPoint) -> Location:
        return self.ctx.datastore.child(point.location)

    def archive_tier(self, point: RecoveryPoint) -> Location:
        return self.ctx.archive.child(point.archive_location or point.location)


def expected_objects(point: RecoveryPoint) -> list[str]:
    """What a complete copy of a point holds: its manifest's objects and the manifest."""
    return sorted([o["name"] for o in point.manifest["objects"]] + [MANIFEST])


def files_under(root: Path) -> list[str]:
    """Every file below `root` (also uploads in progress, which listing does not show)."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def assert_consistent(
    cv: ClockedVault, datastore_dir: Path, archive_dir: Path, *, settled: bool = True
) -> None:
    """The invariant housekeeping promises, checked against the directories themselves:
    a point is listed exactly when a complete copy exists in a tier its row names, the
    row's tier flags match what is stored, and nothing else is stored anywhere (`settled`:
    and no row is left half-deleted)."""
    rows = cv.all_rows()
    listed = {p.id for p in rows if p.state == recovery_points.COMMITTED}
    expected_vault: set[str] = set()
    expected_archive: set[str] = set()
    for p in rows:
        if p.state != recovery_points.COMMITTED:
            continue
        in_vault = sorted(cv.vault_tier(p).list())
        in_archive = sorted(cv.archive_tier(p).list()) if p.archive_location else []
        complete = expected_objects(p)
        assert p.in_vault or p.in_archive or p.rehydrated_until, f"{p.id} listed in no tier"
        holds_vault = p.in_vault or p.rehydrated_until is not None
        assert (in_vault == complete) == holds_vault, (p.id, "vault", in_vault, p.in_vault)
        assert (in_archive == complete) == p.in_archive, (p.id, "archive", in_archive)
        if holds_vault:
            expected_vault |= {f"{p.location}/{n}" for n in complete}
        if p.in_archive:
            expected_archive |= {f"{p.archive_location}/{n}" for n in complete}
    stray_vault = set(files_under(datastore_dir)) - expected_vault
    stray_archive = set(files_under(archive_dir)) - expected_archive
    assert not stray_vault, f"stored in VaultStore without a listed point: {sorted(stray_vault)}"
    assert not stray_archive, (
        f"stored in ArchiveStore without a listed point: {sorted(stray_archive)}"
    )
    if settled:
        deleting = [p.id for p in rows if p.id not in listed]
        assert not deleting, f"rows left half-deleted: {deleting}"


def open_clocked(
    settings: Settings, clock: FrozenClock, *, workers: int = 2, start_workers: bool = True
) -> ClockedVault:
    """Build the Context on `clock`, bootstrap (migrate) and start the worker pool."""
    ctx = Context.create(settings, clock=clock)
    service = Service(ctx, None)
    service.bootstrap()
    sub = service.list_subscriptions()[0].id
    cv = ClockedVault(Vault(service, ctx, sub), clock, None, workers)
    if start_workers:
        cv.start_workers()
    return cv


@contextlib.contextmanager
def clocked_vault(
    tmp_path: Path,
    policy: dict[str, Any],
    *,
    start: datetime = START,
    metadata_url: str | None = None,
    workers: int = 2,
    stale_after_seconds: float = 30.0,
) -> Iterator[tuple[ClockedVault, Path, Path]]:
    """A pgvault at `start` with vault `vault1` and policy `p1`; yields it with the
    datastore and archive directories."""
    datastore, archive = tmp_path / "datastore", tmp_path / "archive"
    settings = settings_for(
        tmp_path / "home",
        metadata_url=metadata_url,
        datastore=datastore,
        archive=archive,
        stale_after_seconds=stale_after_seconds,
    )
    cv = open_clocked(settings, FrozenClock(start), workers=workers)
    try:
        cv.create_vault(policy)
        yield cv, datastore, archive
    finally:
        cv.close()
