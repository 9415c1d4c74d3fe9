"""Catalog recovery: after the metadata database is deleted, the datastore's manifests alone
give back the same recovery points, and one of them restores to a database equal to the source.

What cannot come from a manifest (servers, connection strings in key-vault secrets, vaults,
policies, instances) is re-created by the operator with the old names; `rebuild_catalog` then
matches each manifest to its instance. One point's manifest is rewritten without its
`catalog` section, as manifests were before it existed: it is matched by server and database;
the other lives only in the archive tier, and comes back as an archived point.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

from pgvault import jobs
from pgvault.config import Settings
from pgvault.engine.load import load_manifest
from pgvault.engine.manifest import MANIFEST
from pgvault.jobkinds.tiering import copy_verified
from pgvault.workers import WorkerPool
from tests.integration.conftest import REGION, RG, Vault, start_vault
from tests.support.pg import PgCluster
from tests.support.sampledb import assert_same_data, build_rich_database, snapshot


def _open(settings: Settings) -> tuple[Vault, WorkerPool]:
    """A started service with the resources of the integration `vault` fixture."""
    service, pool = start_vault(settings)
    sub = service.list_subscriptions()[0].id
    service.put_keyvault(sub, RG, "kv1", REGION)
    service.put_vault(sub, RG, "vault1", REGION, {}, {})
    service.put_policy(sub, RG, "vault1", "weekly", {})
    vault = Vault(service, service.ctx, sub)
    vault.grant_identity()
    return vault, pool


def _close(vault: Vault, pool: WorkerPool) -> None:
    pool.stop()
    vault.ctx.db.dispose()


def test_rebuild_after_losing_the_metadata(
    tmp_path: Path, pg_source: PgCluster, pg_target: PgCluster
) -> None:
    settings = Settings(
        home=tmp_path / "home",
        public_url="http://127.0.0.1:8080",
        heartbeat_seconds=0.5,
        local_storage_roots=(tmp_path,),
        storage_endpoint_allow=("127.0.0.0/8", "::1"),
    )
    db = f"cat_{uuid.uuid4().hex[:8]}"
    build_rich_database(pg_source, db)

    vault, pool = _open(settings)
    try:
        instance = vault.protect(pg_source, db)
        for _ in range(2):
            job = vault.backup(instance)
            assert job.status == jobs.COMPLETED, job.error_message
        _, before = vault.service.list_points(vault.sub, RG, vault.name, instance)
        assert before[0].manifest["catalog"]["instanceName"] == instance
        old_style = vault.ctx.datastore.child(before[1].location)
        manifest = json.loads(old_style.get_bytes(MANIFEST))
        del manifest["catalog"]
        old_style.put_bytes(MANIFEST, json.dumps(manifest).encode())
        # the newest point lives only in the archive tier (as after an on-expiry move)
        newest = vault.ctx.datastore.child(before[0].location)
        archived = vault.ctx.archive.child(before[0].location)
        copy_verified(newest, archived, load_manifest(newest))
        newest.delete_all()
    finally:
        _close(vault, pool)

    for suffix in ("", "-wal", "-shm"):  # the metadata database is lost
        (settings.home / f"pgvault.db{suffix}").unlink(missing_ok=True)

    vault, pool = _open(settings)
    try:
        early = vault.service.rebuild_catalog().to_dict()  # before the instance exists again
        assert early["manifestsFound"] == 2
        assert early["pointsAdded"] == 0
        assert sorted(u["database"] for u in early["unmatched"]) == [db, db]

        assert vault.protect(pg_source, db) == instance  # re-created with its old name
        report = vault.service.rebuild_catalog().to_dict()
        assert report["pointsAdded"] == 2, report
        assert report["unmatched"] == []
        again = vault.service.rebuild_catalog().to_dict()
        assert again["pointsAdded"] == 0
        assert again["pointsAlreadyPresent"] == 2

        _, after = vault.service.list_points(vault.sub, RG, vault.name, instance)
        assert [p.id for p in after] == [p.id for p in before]
        assert (after[0].in_vault, after[0].in_archive) == (False, True)
        assert after[0].archive_location == before[0].location
        assert (after[1].in_vault, after[1].in_archive) == (True, False)
        for old, new in zip(before, after, strict=True):
            assert new.location == old.location
            assert new.stored_bytes == old.stored_bytes
            assert abs(new.created_at - old.created_at) < timedelta(minutes=5)
            assert new.expires_at is not None

        vault.register(pg_target, "tgt")
        restorer = vault.secret(
            "restorer",
            f"Server=127.0.0.1;Port={pg_target.port};User Id=restorer;Password=restorer-pw;",
        )
        new_db = f"rebuilt_{uuid.uuid4().hex[:8]}"
        job = vault.restore(instance, vault.db_request(after[1].id, "tgt", new_db, restorer))
        assert job.status == jobs.COMPLETED, job.error_message
        assert_same_data(snapshot(pg_source.admin_dsn(db)), snapshot(pg_target.admin_dsn(new_db)))
    finally:
        _close(vault, pool)
