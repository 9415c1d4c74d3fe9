"""Self-tests of tests/support: real PostgreSQL clusters and storage emulators."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import obstore
import psycopg
import pytest
from obstore.store import AzureStore, S3Store

from tests.support.pg import PgCluster
from tests.support.sampledb import (
    APP_OWNER,
    APP_READER,
    APP_READER_PASSWORD,
    DatabaseSnapshot,
    assert_same_data,
    assert_same_permissions,
    assert_same_schema,
    build_rich_database,
    create_sample_roles,
    snapshot,
)
from tests.support.services import azurite_blob, moto_s3

SOURCE_DB = "rich"


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def source() -> Iterator[PgCluster]:
    cluster = PgCluster.start("source")
    try:
        build_rich_database(cluster, SOURCE_DB)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def target() -> Iterator[PgCluster]:
    cluster = PgCluster.start("target")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def source_snapshot(source: PgCluster) -> DatabaseSnapshot:
    return snapshot(source.admin_dsn(SOURCE_DB))


@pytest.fixture(scope="module")
def dump_file(source: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("dump") / "rich.dump"
    subprocess.run(
        [str(source.bindir / "pg_dump"), "-Fc", "-f", str(path), "-d", source.admin_dsn(SOURCE_DB)],
        check=True,
        capture_output=True,
    )
    return str(path)


def _restore(target: PgCluster, dsn: str, dump: str, *extra: str) -> None:
    proc = subprocess.run(
        [str(target.bindir / "pg_restore"), "--exit-on-error", *extra, "-d", dsn, dump],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_two_clusters_start_and_stop() -> None:
    a = PgCluster.start("a")
    b = PgCluster.start("b")
    try:
        assert a.port != b.port
        assert a.host == b.host == "127.0.0.1"
        assert a.version == b.version == 15
        a.execute("CREATE DATABASE only_in_a")
        assert a.database_exists("only_in_a")
        assert not b.database_exists("only_in_a")
        assert a.databases() == {"postgres", "only_in_a"}
        assert b.query("SELECT 1 + 1") == [(2,)]
    finally:
        a.stop()
        b.stop()
    for cluster in (a, b):
        assert not cluster.base_dir.exists()
        assert not _port_open(cluster.port)
    a.stop()  # idempotent


def test_password_auth_over_tcp(target: PgCluster) -> None:
    with psycopg.connect(target.dsn(password=target.superuser_password)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        assert conn.info.host == "127.0.0.1"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(target.dsn(password="wrong"))
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(target.dsn())  # no password at all

    target.create_role("selftest_login", "s3cret", createdb=True)
    with psycopg.connect(target.dsn(user="selftest_login", password="s3cret")) as conn:
        row = conn.execute(
            "SELECT rolcreatedb, rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert row == (True, False)


def test_rich_database_snapshot(source: PgCluster, source_snapshot: DatabaseSnapshot) -> None:
    snap = source_snapshot
    assert_same_data(snap, snap)
    assert_same_permissions(snap, snap)
    assert_same_schema(snap, snap)
    assert snap.total_rows > 3000
    for partition in ("events_2023", "events_2024", "events_2025", "events_default"):
        assert snap.row_count(f"app.{partition}") > 0
    assert snap.row_count('"données"."Ünïcode tåble"') == 5
    assert snap.row_count("app.customer_event_counts") == 1200
    assert {"pgcrypto", "hstore", "citext"} <= set(snap.extensions)
    assert sorted(size for size, _ in snap.large_objects.values()) == [7000, 1 << 20]
    assert snap.sequences["sequence app.never_used"] == (77, False)
    assert snap.owners["table app.customers"] == APP_OWNER
    assert f"{APP_READER}=r/{APP_OWNER}" in snap.acls["table app.customers"]
    # the trigger fired once per customer
    assert snap.row_count("audit.log") == 1200

    # a second snapshot is identical; a change is reported by object name
    source.execute(
        'UPDATE "données"."Ünïcode tåble" SET "naïf" = NOT "naïf" WHERE id = 1', dbname=SOURCE_DB
    )
    try:
        with pytest.raises(AssertionError, match="Ünïcode tåble"):
            assert_same_data(snap, snapshot(source.admin_dsn(SOURCE_DB)))
    finally:
        source.execute(
            'UPDATE "données"."Ünïcode tåble" SET "naïf" = NOT "naïf" WHERE id = 1',
            dbname=SOURCE_DB,
        )
    assert_same_data(snap, snapshot(source.admin_dsn(SOURCE_DB)))


def test_dump_restore_with_roles_keeps_data_and_permissions(
    target: PgCluster, source_snapshot: DatabaseSnapshot, dump_file: str
) -> None:
    create_sample_roles(target)
    create_sample_roles(target)  # idempotent
    target.execute("CREATE DATABASE copy_full")
    _restore(target, target.admin_dsn("copy_full"), dump_file)

    restored = snapshot(target.admin_dsn("copy_full"))
    assert_same_data(source_snapshot, restored)
    assert_same_permissions(source_snapshot, restored)
    assert_same_schema(source_snapshot, restored)
    with psycopg.connect(target.dsn("copy_full", APP_READER, APP_READER_PASSWORD)) as conn:
        assert conn.execute("SELECT count(*) FROM app.customers").fetchone() == (1200,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM app.documents")


def test_no_owner_restore_as_non_superuser_changes_owners(
    target: PgCluster, source_snapshot: DatabaseSnapshot, dump_file: str
) -> None:
    target.create_role("restorer", "restorer-pw", createdb=True)
    dsn = target.dsn(user="restorer", password="restorer-pw")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE DATABASE copy_noowner")
    _restore(
        target,
        target.dsn("copy_noowner", "restorer", "restorer-pw"),
        dump_file,
        "--no-owner",
        "--no-acl",
    )

    restored = snapshot(target.admin_dsn("copy_noowner"))
    assert_same_data(source_snapshot, restored)
    assert restored.owners["table app.customers"] == "restorer"
    with pytest.raises(AssertionError, match=r"owner of table app\.customers"):
        assert_same_permissions(source_snapshot, restored)


def test_moto_s3_roundtrip() -> None:
    with moto_s3() as s3:
        s3.create_bucket("selftest-bucket")
        store = S3Store(
            "selftest-bucket",
            endpoint=s3.endpoint_url,
            access_key_id=s3.access_key_id,
            secret_access_key=s3.secret_access_key,
            region=s3.region,
            client_options={"allow_http": True},
        )
        obstore.put(store, "dir/hello.bin", b"\x00hello s3\xff")
        assert bytes(obstore.get(store, "dir/hello.bin").bytes()) == b"\x00hello s3\xff"
        port = int(s3.endpoint_url.rsplit(":", 1)[1])
    assert not _port_open(port)


def test_azurite_roundtrip() -> None:
    with azurite_blob() as az:
        assert az.blob_endpoint == f"http://127.0.0.1:{az.port}/devstoreaccount1"
        az.create_container("selftest-container")
        store = AzureStore(
            "selftest-container",
            account_name=az.account_name,
            account_key=az.account_key,
            endpoint=az.blob_endpoint,
            client_options={"allow_http": True},
        )
        obstore.put(store, "dir/hello.bin", b"\x00hello azure\xff")
        assert bytes(obstore.get(store, "dir/hello.bin").bytes()) == b"\x00hello azure\xff"
        with az.service_client() as client:
            names = [b.name for b in client.get_container_client("selftest-container").list_blobs()]
        assert names == ["dir/hello.bin"]
    assert not _port_open(az.port)
