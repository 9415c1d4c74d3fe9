"""Cross-region restore over real services: an eastus vault whose points replicate to
westus (a moto S3 bucket, while the primary datastore is a local directory), restores
from the secondary, the refusals, a killed replication, retention, cancel, and the
disaster: the primary datastore deleted and the primary server stopped.

One pgvault and its clusters are shared by the whole module (the tests run in order and
build on each other's points): keeping it fast matters more than isolation here.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from prometheus_client import generate_latest
from sqlalchemy import select

from pgvault import housekeeping, jobs, observability, replicas
from pgvault.config import Settings
from pgvault.engine.manifest import MANIFEST
from pgvault.errors import Code, Conflict, PgVaultError
from pgvault.jobkinds import kind_for, replicate, tiering
from pgvault.jobkinds.restore import DatabaseTarget, FilesTarget, RestoreRequest
from pgvault.recovery_points import RecoveryPoint
from pgvault.services import Service
from pgvault.workers import WorkerPool, sweep_abandoned
from tests.integration.conftest import RG, Vault, start_vault
from tests.support.pg import PgCluster
from tests.support.sampledb import (
    DatabaseSnapshot,
    assert_same_data,
    build_rich_database,
    snapshot,
)
from tests.support.services import S3Endpoint

EAST, WEST = "eastus", "westus"


@dataclass
class Crr:
    vault: Vault
    pool: WorkerPool
    east: PgCluster
    west: PgCluster
    instance: str
    database: str
    source: DatabaseSnapshot
    tmp: Path

    @property
    def service(self) -> Service:
        return self.vault.service

    @property
    def instance_id(self) -> str:
        return f"{self.vault.vault_id}/backupInstances/{self.instance}"

    def request(self, point: str, server: str, database: str, secret: str) -> RestoreRequest:
        server_id = self.service.get_server(self.vault.sub, RG, server).arm_id
        target = DatabaseTarget(server_id, database, secret)
        return RestoreRequest(point, "VaultStore", target, secondary_region=WEST)

    def restorer(self, cluster: PgCluster, name: str) -> str:
        return self.vault.secret(
            name, f"Server=127.0.0.1;Port={cluster.port};User Id=restorer;Password=restorer-pw;"
        )

    def replica(self, point: str, timeout: float = 60) -> replicas.Replica:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.vault.ctx.db.session() as s:
                row = replicas.get(s, point, WEST)
                if row is not None:
                    s.expunge(row)
                    return row
            time.sleep(0.1)
        raise AssertionError(f"point {point} was not replicated in {timeout}s")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def crr(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    s3: S3Endpoint,
    pg_target: PgCluster,
) -> Iterator[Crr]:
    """The module's pgvault, once on SQLite and once on PostgreSQL metadata."""
    tmp = tmp_path_factory.mktemp("crr")
    metadata_url = None
    if request.param == "postgresql":
        meta: PgCluster = request.getfixturevalue("pg_metadata")
        name = f"meta_{uuid.uuid4().hex[:10]}"
        meta.execute(f'CREATE DATABASE "{name}"')
        metadata_url = meta.superuser_url(name)
    bucket = f"west-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(bucket)
    regions_file = tmp / "regions.json"
    west_url = f"s3://{bucket}/vault?endpoint={s3.endpoint_url}&region={s3.region}"
    regions_file.write_text(json.dumps({"regions": {WEST: {"datastore": west_url}}}))
    east = PgCluster.start("crr-east")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", s3.access_key_id)
        mp.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_access_key)
        settings = Settings(
            home=tmp / "home",
            database_url=metadata_url,
            public_url="http://127.0.0.1:8080",
            heartbeat_seconds=0.5,
            local_storage_roots=(tmp,),
            regions_file=regions_file,
        )
        service, pool = start_vault(settings)
        sub = service.list_subscriptions()[0].id
        service.put_keyvault(sub, RG, "kv1", EAST)
        grs = {
            "storageSettings": [{"datastoreType": "VaultStore", "type": "GeoRedundant"}],
            "featureSettings": {"crossRegionRestoreSettings": {"state": "Enabled"}},
        }
        service.put_vault(sub, RG, "vault1", EAST, grs, {})
        service.put_policy(sub, RG, "vault1", "weekly", {})
        vault = Vault(service, service.ctx, sub)
        vault.grant_identity()
        database = "shop"
        build_rich_database(east, database)
        instance = vault.protect(east, database, server="east1")
        vault.register(pg_target, "west1", WEST)
        vault.register(pg_target, "central1", "centralus")
        source = snapshot(east.admin_dsn(database))
        state = Crr(vault, pool, east, pg_target, instance, database, source, tmp)
        try:
            yield state
        finally:
            state.pool.stop()
            service.ctx.db.dispose()
            east.stop()
            if metadata_url is not None:
                meta.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _backup(crr: Crr) -> str:
    job = crr.vault.backup(crr.instance)
    assert job.status == jobs.COMPLETED, job.error_message
    return crr.vault.latest_point(crr.instance)


def test_points_replicate_verified_and_lag_is_measured(crr: Crr) -> None:
    point = _backup(crr)
    replica = crr.replica(point)
    assert replica.tier == "VaultStore"
    assert replica.lag_seconds >= 0
    west, _ = crr.vault.ctx.site(WEST)
    stored = west.child(replica.location)
    with crr.vault.ctx.db.session() as s:
        manifest = s.get_one(RecoveryPoint, point).manifest
    names = {o["name"] for o in manifest["objects"]}
    assert names | {MANIFEST} <= set(stored.list())
    lag = crr.service.replication_lag(crr.vault.sub, RG, "vault1", crr.instance)
    assert lag.replicated_points == 1
    assert lag.pending_points == 0
    assert lag.last_lag_seconds is not None
    metrics = generate_latest(observability.registry(crr.vault.ctx)).decode()
    assert f'pgvault_replication_lag_seconds{{instance="{crr.instance}",vault="vault1"}}' in metrics
    view, points = crr.service.secondary_points(crr.vault.sub, WEST, EAST, crr.instance_id)
    assert [p.point.id for p in points] == [point]
    assert view.instance.name == crr.instance


def test_restore_to_the_secondary_region_equals_the_source(crr: Crr) -> None:
    point = crr.vault.latest_point(crr.instance)
    req = crr.request(point, "west1", f"crr_{uuid.uuid4().hex[:8]}", crr.restorer(crr.west, "r1"))
    crr.service.validate_cross_region_restore(crr.vault.sub, WEST, EAST, crr.instance_id, req)
    job = crr.service.cross_region_restore(crr.vault.sub, WEST, EAST, crr.instance_id, req)
    done = crr.vault.wait(job.id)
    assert done.status == jobs.COMPLETED, done.error_message
    assert isinstance(req.target, DatabaseTarget)
    assert_same_data(crr.source, snapshot(crr.west.admin_dsn(req.target.database)))
    views = crr.service.cross_region_jobs(crr.vault.sub, WEST, EAST, crr.vault.vault_id)
    assert [v.job.id for v in views] == [job.id]


def _refused(crr: Crr, region: str, req: RestoreRequest) -> Code:
    with pytest.raises(PgVaultError) as info:
        crr.service.validate_cross_region_restore(crr.vault.sub, region, EAST, crr.instance_id, req)
    return info.value.code


def test_only_primary_to_secondary_is_allowed(crr: Crr) -> None:
    point = crr.vault.latest_point(crr.instance)
    secret = crr.restorer(crr.west, "r2")
    west_req = crr.request(point, "west1", "crr_never", secret)
    assert _refused(crr, EAST, west_req) == Code.UserErrorCrossRegionRestoreToPrimaryNotSupported
    assert _refused(crr, "centralus", west_req) == Code.UserErrorCrossRegionRestoreRegionNotPaired
    to_primary = crr.request(point, "east1", "crr_never", crr.vault.admin_secret(crr.east, "e"))
    assert _refused(crr, WEST, to_primary) == Code.UserErrorCrossRegionRestoreToPrimaryNotSupported
    third = crr.request(point, "central1", "crr_never", secret)
    assert _refused(crr, WEST, third) == Code.UserErrorTargetRegionMismatch


def test_a_delay_window_batches_replication(crr: Crr) -> None:
    ctx = crr.vault.ctx
    kept = ctx.settings
    ctx.settings = Settings(**{**kept.__dict__, "replication_delay_seconds": 3600.0})
    try:
        point = _backup(crr)
        assert replicate.queue_due(ctx, ctx.clock.now()) == 0
        with ctx.db.session() as s:
            assert replicas.get(s, point, WEST) is None
        later = ctx.clock.now() + timedelta(hours=2)
        lag = crr.service.replication_lag(crr.vault.sub, RG, "vault1", crr.instance)
        assert lag.pending_points == 1
        assert replicate.queue_due(ctx, later) == 1
    finally:
        ctx.settings = kept
    crr.pool.notify()
    assert crr.replica(point).lag_seconds >= 0


def test_a_point_that_fails_verification_in_the_secondary_is_not_recorded(crr: Crr) -> None:
    ctx = crr.vault.ctx
    kept = ctx.settings
    ctx.settings = Settings(**{**kept.__dict__, "replication_delay_seconds": 3600.0})
    try:
        point = _backup(crr)
    finally:
        ctx.settings = kept
    with ctx.db.session() as s:
        row = s.get_one(RecoveryPoint, point)
        location, dump = row.location, row.manifest["objects"][0]["name"]
    root = ctx.datastore.local_root
    assert root is not None
    with open(root / location / dump, "r+b") as f:  # one byte flipped, same size
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))
    later = ctx.clock.now() + timedelta(hours=2)
    assert replicate.queue_due(ctx, later) == 1
    crr.pool.notify()
    with ctx.db.session() as s:
        job_id = s.scalars(
            select(jobs.Job.id).where(
                jobs.Job.operation == replicate.OPERATION, jobs.Job.recovery_point_id == point
            )
        ).one()
    failed = crr.vault.wait(job_id)
    assert failed.error_code == Code.UserErrorRecoveryPointCorrupted
    west, _ = ctx.site(WEST)
    assert dump not in west.child(location).list()
    with ctx.db.session() as s:
        assert replicas.get(s, point, WEST) is None
        failed_at = jobs.get(s, job_id).ended_at
    assert failed_at is not None
    assert replicate.queue_due(ctx, failed_at + timedelta(minutes=1)) == 0  # backing off
    with ctx.db.session() as s:  # the corrupt point goes, replicas and all
        housekeeping.mark_deleting(s, s.get_one(RecoveryPoint, point))
    housekeeping.finish_deletions(ctx)
    assert west.child(location).list() == []


def test_a_replication_killed_midway_converges_on_rerun(crr: Crr) -> None:
    point = _backup(crr)
    first = crr.replica(point)
    ctx = crr.vault.ctx
    west, _ = ctx.site(WEST)
    stored = west.child(first.location)
    # What a worker killed mid-copy leaves: no replica row, no manifest, half an object,
    # and its job InProgress under a worker whose process is gone.
    with ctx.db.session() as s:
        replicas.forget(s, point)
        manifest = s.get_one(RecoveryPoint, point).manifest
    dump = manifest["objects"][0]["name"]
    half = stored.get_bytes(dump)[: manifest["objects"][0]["size"] // 2]
    stored.delete(MANIFEST)
    stored.put_bytes(dump, half)
    crr.pool.stop()
    with ctx.db.session() as s:
        vault = s.get_one(RecoveryPoint, point)
        job = replicate.queue(
            s, crr.service.get_vault(crr.vault.sub, RG, "vault1"), vault, ctx.clock.now()
        )
        assert job is not None
        job.worker_id, job.heartbeat_at, job.phase = (
            "gone-host:1:x:0",
            ctx.clock.now(),
            "Transferring data",
        )
        killed = job.id
    kept = ctx.settings
    ctx.settings = Settings(**{**kept.__dict__, "stale_after_seconds": 0.0})
    try:
        assert sweep_abandoned(ctx) == 1
    finally:
        ctx.settings = kept
    assert crr.vault.wait(killed).error_code == Code.WorkerLost
    assert housekeeping.sweep(ctx)["replicationsQueued"] == 1
    crr.pool = WorkerPool(ctx, 2)
    crr.vault.service.pool = crr.pool
    crr.pool.start()
    again = crr.replica(point)
    assert stored.get_bytes(dump)[: len(half)] == half
    assert len(stored.get_bytes(dump)) == manifest["objects"][0]["size"]
    assert stored.exists(MANIFEST)
    assert again.tier == "VaultStore"


def test_archived_points_replicate_as_archived(crr: Crr) -> None:
    ctx = crr.vault.ctx
    point = _backup(crr)
    location = crr.replica(point).location
    west_vault, west_archive = ctx.site(WEST)
    assert tiering.tier(ctx, point, ctx.clock.now())
    ctx.datastore.child(location).delete_all()  # the vault copy expires: archive only
    with ctx.db.session() as s:
        s.get_one(RecoveryPoint, point).in_vault = False
    assert housekeeping.sweep(ctx)["replicationsQueued"] == 1
    with ctx.db.session() as s:
        job_id = s.scalars(
            select(jobs.Job.id).where(
                jobs.Job.operation == replicate.OPERATION,
                jobs.Job.recovery_point_id == point,
                jobs.Job.status == jobs.IN_PROGRESS,
            )
        ).one()
    assert crr.vault.wait(job_id).status == jobs.COMPLETED
    assert crr.replica(point).tier == "ArchiveStore"
    assert MANIFEST in west_archive.child(location).list()
    assert west_vault.child(location).list() == []
    req = crr.request(point, "west1", "crr_never", crr.restorer(crr.west, "r5"))
    assert _refused(crr, WEST, req) == Code.UserErrorCrossRegionRestoreArchivedPoint


def test_retention_deletes_the_replicas_too(crr: Crr) -> None:
    ctx = crr.vault.ctx
    point = crr.vault.latest_point(crr.instance)
    location = crr.replica(point).location

    def stored() -> list[str]:
        return [name for tier in ctx.site(WEST) for name in tier.child(location).list()]

    assert stored()
    with ctx.db.session() as s:
        housekeeping.mark_deleting(s, s.get_one(RecoveryPoint, point))
    housekeeping.finish_deletions(ctx)
    assert stored() == []
    with ctx.db.session() as s:
        assert replicas.get(s, point, WEST) is None


def test_cancel_queued_running_and_refused_during_restore_transfer(crr: Crr) -> None:
    ctx, sub = crr.vault.ctx, crr.vault.sub
    crr.pool.stop()
    try:
        queued = crr.service.adhoc_backup(sub, RG, "vault1", crr.instance, None, None)
        view = crr.service.cancel_job(sub, RG, "vault1", queued.id)
        assert view.job.status == jobs.CANCELLED
        with pytest.raises(Conflict) as info:
            crr.service.cancel_job(sub, RG, "vault1", queued.id)
        assert info.value.code == Code.JobAlreadyFinished
        # a running backup: claimed by a worker, cancelled, stopped at its next report
        running = crr.service.adhoc_backup(sub, RG, "vault1", crr.instance, None, None)
        with ctx.db.session() as s:
            claimed = jobs.claim_next(s, "test-worker", ctx.clock.now())
            assert claimed is not None
            assert claimed.id == running.id
            location = claimed.params["location"]
        view = crr.service.cancel_job(sub, RG, "vault1", running.id)
        assert view.job.status == jobs.IN_PROGRESS
        kind_for(jobs.BACKUP).run(ctx, running.id)
        done = crr.vault.wait(running.id)
        assert done.status == jobs.CANCELLED
        assert done.error_code == Code.JobCancelledByUser
        assert ctx.datastore.child(location).list() == []
        # a restore whose data transfer started cannot be cancelled
        point = _point_with_replica(crr)
        req = crr.request(
            point, "west1", f"crr_{uuid.uuid4().hex[:8]}", crr.restorer(crr.west, "r3")
        )
        restore_job = crr.service.cross_region_restore(sub, WEST, EAST, crr.instance_id, req)
        with ctx.db.session() as s:
            assert jobs.claim_next(s, "test-worker", ctx.clock.now()) is not None
            jobs.enter_phase(s, restore_job.id, "Transferring data", ctx.clock.now())
        with pytest.raises(Conflict) as info:
            crr.service.cancel_job(sub, RG, "vault1", restore_job.id)
        assert info.value.code == Code.JobCannotBeCancelled
        with ctx.db.session() as s:
            jobs.finish(jobs.get(s, restore_job.id), ctx.clock.now())
    finally:
        crr.pool = WorkerPool(ctx, 2)
        crr.vault.service.pool = crr.pool
        crr.pool.start()


def _dumps(cluster: PgCluster, database: str, waiting: bool) -> int:
    """pgvault's sessions on `database` (waiting: those blocked on a LOCK TABLE, pg_dump's)."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgvault' AND datname = %s"
    )
    if waiting:
        query += " AND wait_event_type = 'Lock' AND query ILIKE 'LOCK TABLE%%'"
    return int(cluster.query(query, params=(database,))[0][0])


def test_cancel_stops_a_running_pg_dump_and_removes_its_objects(crr: Crr) -> None:
    """pg_dump is made to wait on a table lock the test holds, so the cancel certainly
    arrives while it runs; once the lock goes, its first output meets the cancel."""
    sub, ctx = crr.vault.sub, crr.vault.ctx
    [(table,)] = crr.east.query(
        "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1 LIMIT 1",
        dbname=crr.database,
    )
    with psycopg.connect(crr.east.admin_dsn(crr.database)) as locker:
        locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        job = crr.service.adhoc_backup(sub, RG, "vault1", crr.instance, None, None)
        deadline = time.monotonic() + 60
        while _dumps(crr.east, crr.database, waiting=True) == 0:
            assert time.monotonic() < deadline, "pg_dump never started"
            time.sleep(0.05)
        view = crr.service.cancel_job(sub, RG, "vault1", job.id)
        assert view.job.status == jobs.IN_PROGRESS
        assert view.job.phase == "Transferring data"
        locker.rollback()
    done = crr.vault.wait(job.id)
    assert done.status == jobs.CANCELLED, done.error_message
    assert ctx.datastore.child(done.params["location"]).list() == []
    deadline = time.monotonic() + 10
    while _dumps(crr.east, crr.database, waiting=False):
        assert time.monotonic() < deadline, "pg_dump still running after the cancel"
        time.sleep(0.05)


def _point_with_replica(crr: Crr) -> str:
    with crr.vault.ctx.db.session() as s:
        rows = list(s.scalars(select(replicas.Replica).where(replicas.Replica.region == WEST)))
        if rows:
            return rows[0].point_id
    return ""


def _container(crr: Crr, name: str, region: str) -> tuple[str, Path]:
    root = crr.tmp / name
    crr.service.put_storage_account(crr.vault.sub, RG, name, region, "local", {"path": str(root)})
    crr.service.put_container(crr.vault.sub, RG, name, "dumps")
    return f"http://127.0.0.1:8080/blob/{name}/dumps", root / "dumps"


def test_restore_as_files_in_the_secondary_region(crr: Crr) -> None:
    point = _point_with_replica(crr)
    west_url, west_dir = _container(crr, "westfiles", WEST)
    east_url, _ = _container(crr, "eastfiles", EAST)
    to_primary = RestoreRequest(
        point, "VaultStore", FilesTarget(east_url, "x"), secondary_region=WEST
    )
    assert _refused(crr, WEST, to_primary) == Code.UserErrorCrossRegionRestoreToPrimaryNotSupported
    req = RestoreRequest(
        point, "VaultStore", FilesTarget(west_url, "dr/shop"), secondary_region=WEST
    )
    job = crr.service.cross_region_restore(crr.vault.sub, WEST, EAST, crr.instance_id, req)
    done = crr.vault.wait(job.id)
    assert done.status == jobs.COMPLETED, done.error_message
    assert (west_dir / "dr" / "shop" / "toc.dat").stat().st_size > 0  # a pg_restore -Fd archive
    assert b"PostgresBackupMetadata" in (west_dir / "dr" / "shop.manifest.json").read_bytes()


def test_disaster_primary_lost_restore_from_secondary(crr: Crr) -> None:
    point = _backup(crr)
    crr.replica(point)
    ctx = crr.vault.ctx
    primary_dir = ctx.datastore.local_root
    assert isinstance(primary_dir, Path)
    shutil.rmtree(primary_dir)
    crr.east.stop()
    [seen] = crr.service.secondary_instances(crr.vault.sub, WEST)
    assert seen.primary_status == "Unavailable"
    assert seen.latest is not None
    assert seen.latest.point.id == point
    req = crr.request(point, "west1", f"crr_{uuid.uuid4().hex[:8]}", crr.restorer(crr.west, "r4"))
    job = crr.service.cross_region_restore(crr.vault.sub, WEST, EAST, crr.instance_id, req)
    done = crr.vault.wait(job.id)
    assert done.status == jobs.COMPLETED, done.error_message
    assert isinstance(req.target, DatabaseTarget)
    assert_same_data(crr.source, snapshot(crr.west.admin_dsn(req.target.database)))
