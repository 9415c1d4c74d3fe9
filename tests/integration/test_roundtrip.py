"""Back up a database with every kind of object, restore it, and compare row for row."""

from __future__ import annotations

import dataclasses
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from pgvault import jobs
from pgvault.engine.manifest import Manifest
from tests.integration.conftest import RG, Vault
from tests.support.pg import PgCluster, find_bindir
from tests.support.sampledb import (
    assert_same_data,
    assert_same_permissions,
    build_rich_database,
    create_sample_roles,
    snapshot,
)
from tests.support.services import AzuriteEndpoint, S3Endpoint


def _fresh_db(cluster: PgCluster, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    build_rich_database(cluster, name)
    return name


def _restorer_secret(vault: Vault, target: PgCluster) -> str:
    return vault.secret(
        "restorer", f"Server=127.0.0.1;Port={target.port};User Id=restorer;Password=restorer-pw;"
    )


def _restore_as_database_roundtrip(vault: Vault, source: PgCluster, target: PgCluster) -> None:
    db = _fresh_db(source, "shop")
    instance = vault.protect(source, db)
    job = vault.backup(instance)
    assert job.status == jobs.COMPLETED, job.error_message
    point = vault.latest_point(instance)
    vault.register(target, "tgt")
    new_db = f"restored_{uuid.uuid4().hex[:8]}"
    req = vault.db_request(point, "tgt", new_db, _restorer_secret(vault, target))
    assert vault.validate(instance, req) is None
    job = vault.restore(instance, req)
    assert job.status == jobs.COMPLETED, job.error_message
    assert_same_data(snapshot(source.admin_dsn(db)), snapshot(target.admin_dsn(new_db)))
    owners = target.query(
        "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname NOT IN "
        "('pg_catalog', 'information_schema')",
        dbname=new_db,
    )
    assert owners == [("restorer",)], "the key-vault user owns everything it restored"


def test_restore_as_database_equals_source(
    vault: Vault, pg_source: PgCluster, pg_target: PgCluster
) -> None:
    _restore_as_database_roundtrip(vault, pg_source, pg_target)


def test_recovery_point_manifest_and_listing(vault: Vault, pg_source: PgCluster) -> None:
    db = _fresh_db(pg_source, "meta")
    instance = vault.protect(pg_source, db)
    first = vault.backup(instance)
    second = vault.backup(instance)
    assert first.status == second.status == jobs.COMPLETED
    _, points = vault.service.list_points(vault.sub, RG, vault.name, instance)
    assert [p.id for p in points] == [second.recovery_point_id, first.recovery_point_id]
    manifest = points[0].manifest
    assert manifest["dbName"] == db
    assert manifest["serverVersionNum"] >= 150000
    assert (manifest["version"], manifest["backupDumpFormat"]) == ("2.0", "DIRECTORY")
    assert not any("password" in a.lower() for a in manifest["backupToolArgs"])
    assert not any(a.startswith("--snapshot") for a in manifest["backupToolArgs"])
    assert all(len(o["sha256"]) == 64 and o["size"] > 0 for o in manifest["objects"])
    contents = {o["content"] for o in manifest["objects"]}
    assert contents == {"SchemaToc", "TableData", "LargeObjects"}
    stored = vault.ctx.datastore.child(points[0].location).list()
    assert sorted(stored) == sorted(Manifest.from_dict(manifest).object_keys())


def _restore_files_and_pg_restore(
    vault: Vault, source: PgCluster, target: PgCluster, url: str, fetch: object
) -> None:
    db = _fresh_db(source, "files")
    instance = vault.protect(source, db)
    assert vault.backup(instance).status == jobs.COMPLETED
    point = vault.latest_point(instance)
    prefix = f"restores/{db}"
    job = vault.restore(instance, vault.files_request(point, url, prefix))
    assert job.status == jobs.COMPLETED, job.error_message
    assert f"{prefix}/toc.dat" in job.result["files"]
    assert not [f for f in job.result["files"] if f.endswith(".partial")]
    archive = fetch(prefix)  # type: ignore[operator]
    assert b"PostgresBackupMetadata" in fetch(f"{prefix}.manifest.json")  # type: ignore[operator]
    create_sample_roles(target)
    new_db = f"files_{uuid.uuid4().hex[:8]}"
    target.execute(f'CREATE DATABASE "{new_db}"')
    pg_restore = find_bindir() / "pg_restore"
    subprocess.run(
        [
            str(pg_restore),
            "--exit-on-error",
            "-Fd",
            "-j",
            "2",
            "-d",
            target.admin_dsn(new_db),
            str(archive),
        ],
        check=True,
        capture_output=True,
    )
    a, b = snapshot(source.admin_dsn(db)), snapshot(target.admin_dsn(new_db))
    assert_same_data(a, b)
    assert_same_permissions(a, b)


def _download(into: Path, keys: list[str], get: Callable[[str], bytes]) -> Path:
    """A restored directory archive fetched from an object store into a local directory."""
    into.mkdir()
    for key in keys:
        (into / key.rsplit("/", 1)[1]).write_bytes(get(key))
    return into


def _local_container(vault: Vault, tmp_path: Path) -> tuple[str, object]:
    root = tmp_path / "account"
    vault.service.put_storage_account(
        vault.sub, RG, "localacct", "eastus", "local", {"path": str(root)}
    )
    vault.service.put_container(vault.sub, RG, "localacct", "dumps")
    url = "http://127.0.0.1:8080/blob/localacct/dumps"

    def fetch(name: str) -> Path | bytes:
        path = root / "dumps" / name
        return path if path.is_dir() else path.read_bytes()

    return url, fetch


def test_restore_as_files_keeps_owners_and_grants(
    vault: Vault, pg_source: PgCluster, pg_target: PgCluster, tmp_path: Path
) -> None:
    url, fetch = _local_container(vault, tmp_path)
    _restore_files_and_pg_restore(vault, pg_source, pg_target, url, fetch)


@pytest.mark.parametrize("metadata_url", ["sqlite"], indirect=True)
def test_s3_datastore_and_container(
    vault: Vault, pg_source: PgCluster, pg_target: PgCluster, s3: S3Endpoint, tmp_path: Path
) -> None:
    bucket = f"restore-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(bucket)
    vault.service.put_storage_account(
        vault.sub,
        RG,
        "s3acct",
        "eastus",
        "s3",
        {
            "bucket": bucket,
            "endpoint": s3.endpoint_url,
            "region": s3.region,
            "accessKeyId": s3.access_key_id,
            "secretAccessKey": s3.secret_access_key,
        },
    )
    vault.service.put_container(vault.sub, RG, "s3acct", "dumps")

    def fetch(name: str) -> Path | bytes:
        client = s3.client()
        if name.endswith(".json"):
            body: bytes = client.get_object(Bucket=bucket, Key=f"dumps/{name}")["Body"].read()
            return body
        listed = client.list_objects_v2(Bucket=bucket, Prefix=f"dumps/{name}/")["Contents"]
        keys = [o["Key"] for o in listed]
        return _download(
            tmp_path / "s3", keys, lambda k: client.get_object(Bucket=bucket, Key=k)["Body"].read()
        )

    _restore_files_and_pg_restore(vault, pg_source, pg_target, "http://x/blob/s3acct/dumps", fetch)


@pytest.mark.parametrize("metadata_url", ["sqlite"], indirect=True)
def test_azure_container(
    vault: Vault,
    pg_source: PgCluster,
    pg_target: PgCluster,
    azurite: AzuriteEndpoint,
    tmp_path: Path,
) -> None:
    vault.service.put_storage_account(
        vault.sub,
        RG,
        "azacct",
        "eastus",
        "azure",
        {
            "accountName": azurite.account_name,
            "accountKey": azurite.account_key,
            "endpoint": azurite.blob_endpoint,
        },
    )
    vault.service.put_container(vault.sub, RG, "azacct", "dumps")
    client = azurite.service_client().get_container_client("dumps")

    def fetch(name: str) -> Path | bytes:
        if name.endswith(".json"):
            body: bytes = client.download_blob(name).readall()
            return body
        keys = [b.name for b in client.list_blobs(name_starts_with=f"{name}/")]
        return _download(tmp_path / "az", keys, lambda k: client.download_blob(k).readall())

    _restore_files_and_pg_restore(vault, pg_source, pg_target, "http://x/blob/azacct/dumps", fetch)


def test_single_stream_point_stays_restorable(
    vault: Vault,
    pg_source: PgCluster,
    pg_target: PgCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A point of format 1 (one custom-format stream) restores as before, both ways."""
    db = _fresh_db(pg_source, "old")
    instance = vault.protect(pg_source, db)
    monkeypatch.setattr(vault.ctx, "settings", replace(vault.ctx.settings, backup_format=1))
    assert vault.backup(instance).status == jobs.COMPLETED
    monkeypatch.undo()
    point = vault.latest_point(instance)
    _, rp = vault.service.get_point(vault.sub, RG, vault.name, instance, point)
    assert (rp.manifest["version"], rp.manifest["backupDumpFormat"]) == ("1.0", "CUSTOM")
    assert sorted(vault.ctx.datastore.child(rp.location).list()) == [
        "dump.pgc.zst",
        "manifest.json",
    ]
    vault.register(pg_target, "tgt")
    new_db = f"old_{uuid.uuid4().hex[:8]}"
    job = vault.restore(
        instance, vault.db_request(point, "tgt", new_db, _restorer_secret(vault, pg_target))
    )
    assert job.status == jobs.COMPLETED, job.error_message
    source = snapshot(pg_source.admin_dsn(db))
    assert_same_data(source, snapshot(pg_target.admin_dsn(new_db)))
    url, fetch = _local_container(vault, tmp_path)
    job = vault.restore(instance, vault.files_request(point, url, f"old/{db}"))
    assert job.status == jobs.COMPLETED, job.error_message
    assert job.result["files"] == [f"old/{db}.dump", f"old/{db}.manifest.json"]
    assert fetch(f"old/{db}.dump")[:5] == b"PGDMP"  # type: ignore[operator,index]


def test_contents_and_table_level_restore(
    vault: Vault, pg_source: PgCluster, pg_target: PgCluster
) -> None:
    db = _fresh_db(pg_source, "part")
    instance = vault.protect(pg_source, db)
    assert vault.backup(instance).status == jobs.COMPLETED
    point = vault.latest_point(instance)
    contents = vault.service.point_contents(vault.sub, RG, vault.name, instance, point)
    tables = {(t["schema"], t["name"]): t for t in contents["tables"]}
    assert {"app", "audit"} <= set(contents["schemas"])
    customers = tables[("app", "customers")]
    assert customers["dataBytes"] > 0
    assert customers["storedBytes"] > 0
    assert customers["rowEstimate"] > 0
    assert contents["largeObjects"] >= 1

    vault.register(pg_target, "tgt")
    new_db = f"part_{uuid.uuid4().hex[:8]}"
    req = vault.db_request(point, "tgt", new_db, _restorer_secret(vault, pg_target))
    req = dataclasses.replace(req, tables=("app.customers",), schemas=("audit",))
    job = vault.restore(instance, req)
    assert job.status == jobs.COMPLETED, job.error_message
    target_tables = pg_target.query(
        "SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname NOT IN "
        "('pg_catalog', 'information_schema') ORDER BY 1",
        dbname=new_db,
    )
    assert [r[0] for r in target_tables] == ["app.customers", "audit.log"]
    for table in ("app.customers", "audit.log"):
        count = f"SELECT count(*) FROM {table}"
        assert pg_source.query(count, dbname=db) == pg_target.query(count, dbname=new_db)
    indexes = "SELECT indexname FROM pg_indexes WHERE tablename = 'customers' ORDER BY 1"
    assert pg_source.query(indexes, dbname=db) == pg_target.query(indexes, dbname=new_db)
