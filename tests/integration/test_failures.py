"""Failure paths: each ends with a stable error code, and leaves nothing behind."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from pgvault import jobs
from pgvault.errors import PgVaultError
from pgvault.services import InstanceSpec
from tests.integration.conftest import RG, Vault
from tests.support.pg import PgCluster, free_port
from tests.support.sampledb import build_rich_database


def _db(cluster: PgCluster, prefix: str = "f") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    build_rich_database(cluster, name)
    return name


def _restorer(vault: Vault, target: PgCluster, password: str = "restorer-pw") -> str:
    return vault.secret(
        f"restorer-{uuid.uuid4().hex[:6]}",
        f"Server=127.0.0.1;Port={target.port};User Id=restorer;Password={password};",
    )


def _points(vault: Vault, instance: str) -> list[str]:
    return [p.id for p in vault.service.list_points(vault.sub, RG, vault.name, instance)[1]]


def _stored_objects(vault: Vault) -> list[str]:
    return vault.ctx.datastore.list()


@pytest.fixture
def protected(vault: Vault, pg_source: PgCluster) -> tuple[str, str]:
    """A protected database with one recovery point: (instance, point)."""
    instance = vault.protect(pg_source, _db(pg_source))
    assert vault.backup(instance).status == jobs.COMPLETED
    return instance, vault.latest_point(instance)


def test_target_database_exists(
    vault: Vault, protected: tuple[str, str], pg_target: PgCluster
) -> None:
    instance, point = protected
    vault.register(pg_target, "tgt")
    taken = f"taken_{uuid.uuid4().hex[:6]}"
    pg_target.execute(f'CREATE DATABASE "{taken}"')
    pg_target.execute("CREATE TABLE keep_me (x int)", dbname=taken)
    req = vault.db_request(point, "tgt", taken, _restorer(vault, pg_target))
    error = vault.validate(instance, req)
    assert error is not None
    assert error.code == "UserErrorDatabaseNameAlreadyInUse"
    with pytest.raises(PgVaultError) as exc:
        vault.service.trigger_restore(vault.sub, RG, vault.name, instance, req)
    assert exc.value.code == "UserErrorDatabaseNameAlreadyInUse"
    assert pg_target.query("SELECT count(*) FROM keep_me", dbname=taken) == [(0,)]


def test_wrong_password_in_secret(
    vault: Vault, protected: tuple[str, str], pg_target: PgCluster
) -> None:
    instance, point = protected
    vault.register(pg_target, "tgt")
    secret = _restorer(vault, pg_target, password="not-the-password-xyz")
    new_db = f"never_{uuid.uuid4().hex[:6]}"
    error = vault.validate(instance, vault.db_request(point, "tgt", new_db, secret))
    assert error is not None
    assert error.code == "UserErrorDBUserAuthFailed"
    assert "not-the-password-xyz" not in error.message
    assert not pg_target.database_exists(new_db)


def test_backup_with_wrong_password_fails_job(vault: Vault, pg_source: PgCluster) -> None:
    db = _db(pg_source)
    vault.register(pg_source, "src")
    bad = vault.secret(
        "bad",
        f"Server=127.0.0.1;Port={pg_source.port};User Id=postgres;"
        f"Password=wrong-{uuid.uuid4().hex};",
    )
    spec = InstanceSpec(
        database_id=vault.service.get_server(vault.sub, RG, "src").database_id(db),
        policy_id=f"{vault.vault_id}/backupPolicies/weekly",
        secret_uri=bad,
    )
    with pytest.raises(PgVaultError) as exc:
        vault.service.validate_for_backup(vault.sub, RG, vault.name, spec)
    assert exc.value.code == "UserErrorDBUserAuthFailed"
    vault.service.put_instance(vault.sub, RG, vault.name, "bad-secret", spec)
    job = vault.backup("bad-secret")
    assert job.status == jobs.FAILED
    assert job.error_code == "UserErrorDBUserAuthFailed"
    assert _points(vault, "bad-secret") == []


def test_unreachable_server(vault: Vault, pg_source: PgCluster) -> None:
    db = _db(pg_source)
    gone = free_port()
    vault.service.put_server(vault.sub, RG, "gone", "127.0.0.1", gone, "eastus")
    secret = vault.secret(
        "gone-admin",
        f"Server=127.0.0.1;Port={gone};User Id=postgres;Password={pg_source.superuser_password};",
    )
    spec = InstanceSpec(
        database_id=vault.service.get_server(vault.sub, RG, "gone").database_id(db),
        policy_id=f"{vault.vault_id}/backupPolicies/weekly",
        secret_uri=secret,
    )
    vault.service.put_instance(vault.sub, RG, vault.name, "gone-db", spec)
    job = vault.backup("gone-db")
    assert job.status == jobs.FAILED
    assert job.error_code == "UserErrorServerUnreachable"
    assert pg_source.superuser_password not in (job.error_message or "")
    assert _points(vault, "gone-db") == []


def _pg_dump_pids(port: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        tool = cmd[0].endswith((b"pg_dump", b"psql")) if cmd else False
        if tool and any(f"port={port}".encode() in c for c in cmd):
            pids.append(int(entry.name))
    return pids


def test_pg_dump_killed_mid_stream(vault: Vault, pg_source: PgCluster) -> None:
    db = f"big_{uuid.uuid4().hex[:6]}"
    pg_source.execute(f'CREATE DATABASE "{db}"')
    pg_source.execute(
        "CREATE TABLE t AS SELECT i, md5(i::text) a, md5((i*7)::text) b, md5((i*13)::text) c,"
        " repeat(md5(i::text), 4) d FROM generate_series(1, 1500000) i",
        dbname=db,
    )
    instance = vault.protect(pg_source, db)
    job = vault.service.adhoc_backup(vault.sub, RG, vault.name, instance, None, None)
    deadline = time.monotonic() + 60
    killed = False
    while time.monotonic() < deadline and not killed:
        view = vault.service.get_job(vault.sub, RG, vault.name, job.id)
        pids = _pg_dump_pids(pg_source.port)
        if view.job.bytes_done > 0 and pids:
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            killed = True
        elif view.job.status != jobs.IN_PROGRESS:
            break
        time.sleep(0.02)
    assert killed, "the backup finished before pg_dump could be killed"
    final = vault.wait(job.id)
    assert final.status == jobs.FAILED
    assert final.error_code == "UserErrorBackupToolFailed"
    assert _points(vault, instance) == []
    assert _stored_objects(vault) == []


def _flip_largest_object(vault: Vault, instance: str, point: str) -> None:
    _view, rp = vault.service.get_point(vault.sub, RG, vault.name, instance, point)
    table_data = [o for o in rp.manifest["objects"] if o["content"] == "TableData"]
    largest = max(table_data, key=lambda o: o["size"])
    path = vault.ctx.settings.home / "datastore" / rp.location / largest["name"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_byte_stops_the_restore_and_drops_its_database(
    vault: Vault, protected: tuple[str, str], pg_target: PgCluster
) -> None:
    instance, point = protected
    _flip_largest_object(vault, instance, point)
    vault.register(pg_target, "tgt")
    new_db = f"corrupt_{uuid.uuid4().hex[:6]}"
    job = vault.restore(
        instance, vault.db_request(point, "tgt", new_db, _restorer(vault, pg_target))
    )
    assert job.status == jobs.FAILED
    assert job.error_code == "UserErrorRecoveryPointCorrupted", job.error_message
    assert not pg_target.database_exists(new_db)


def test_verify_first_refuses_before_touching_target(
    vault: Vault, protected: tuple[str, str], pg_target: PgCluster
) -> None:
    instance, point = protected
    _flip_largest_object(vault, instance, point)
    vault.register(pg_target, "tgt")
    new_db = f"corrupt_{uuid.uuid4().hex[:6]}"
    req = vault.db_request(point, "tgt", new_db, _restorer(vault, pg_target))
    job = vault.restore(instance, dataclasses.replace(req, verify_first=True))
    assert job.status == jobs.FAILED
    assert job.error_code == "UserErrorRecoveryPointCorrupted"
    assert not pg_target.database_exists(new_db)
    assert "Creating database" not in [p["name"] for p in job.phases]


def test_failed_restore_drops_the_database_it_created(
    vault: Vault, pg_source: PgCluster, pg_target: PgCluster
) -> None:
    db = f"ext_{uuid.uuid4().hex[:6]}"
    pg_source.execute(f'CREATE DATABASE "{db}"')
    pg_source.execute("CREATE EXTENSION pg_stat_statements; CREATE TABLE t(x int)", dbname=db)
    instance = vault.protect(pg_source, db)
    assert vault.backup(instance).status == jobs.COMPLETED
    vault.register(pg_target, "tgt")
    new_db = f"half_{uuid.uuid4().hex[:6]}"
    req = vault.db_request(vault.latest_point(instance), "tgt", new_db, _restorer(vault, pg_target))
    job = vault.restore(instance, req)
    assert job.status == jobs.FAILED
    assert job.error_code == "UserErrorRestoreFailed"
    assert "pg_stat_statements" in (job.error_message or "")
    assert not pg_target.database_exists(new_db)


def test_validation_reports_every_failure(
    vault: Vault, protected: tuple[str, str], pg_target: PgCluster
) -> None:
    instance, point = protected
    vault.register(pg_target, "far", region="westus")
    taken = f"taken_{uuid.uuid4().hex[:6]}"
    pg_target.execute(f'CREATE DATABASE "{taken}"')
    error = vault.validate(
        instance, vault.db_request(point, "far", taken, _restorer(vault, pg_target))
    )
    assert error is not None
    codes = {e.code for e in getattr(error, "errors", [error])}
    assert codes == {"UserErrorTargetRegionMismatch", "UserErrorDatabaseNameAlreadyInUse"}


def test_restore_over_the_original_is_refused(
    vault: Vault, protected: tuple[str, str], pg_source: PgCluster
) -> None:
    instance, point = protected
    view = vault.service.get_instance(vault.sub, RG, vault.name, instance)
    req = vault.db_request(point, "src", view.instance.database, vault.admin_secret(pg_source))
    error = vault.validate(instance, req)
    assert error is not None
    codes = {e.code for e in getattr(error, "errors", [error])}
    assert "UserErrorRestoreOverOriginalNotSupported" in codes


def test_database_protected_once(vault: Vault, protected: tuple[str, str]) -> None:
    instance, _ = protected
    view = vault.service.get_instance(vault.sub, RG, vault.name, instance)
    spec = InstanceSpec(
        database_id=view.server.database_id(view.instance.database),
        policy_id=f"{vault.vault_id}/backupPolicies/weekly",
        secret_uri=view.instance.secret_uri,
    )
    with pytest.raises(PgVaultError) as exc:
        vault.service.put_instance(vault.sub, RG, vault.name, "second", spec)
    assert exc.value.code == "UserErrorDppDatasourceAlreadyProtected"


def test_file_prefix_cannot_escape_container(
    vault: Vault, protected: tuple[str, str], tmp_path: Path
) -> None:
    from pgvault.jobkinds.restore import check_file_prefix

    for prefix in ("../x", "/etc/x", "a/../../b"):
        with pytest.raises(PgVaultError) as exc:
            check_file_prefix(prefix)
        assert exc.value.code == "UserErrorInvalidFilePrefix"
