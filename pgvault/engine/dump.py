"""Backup: `pg_dump -Fc -Z0` streamed through in-process zstd and sha256 into the datastore.

Nothing is staged on local disk. The producer's exit status is checked before the
upload completes (the generator raises at EOF if pg_dump failed), so a killed
pg_dump aborts the multipart upload and no object appears. The manifest is the
last object written; the caller makes the point visible only after that.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import zstandard

from pgvault.engine import pgtools
from pgvault.engine.manifest import DUMP, MANIFEST, Manifest, StoredObject
from pgvault.errors import BackupToolError, Code, UserError
from pgvault.storage.backends import Location

READ_SIZE = 1 << 20
PIPE_SIZE = 1 << 20
# Chosen by benchmarks/ (see README): level 3 with two compression threads stays within
# ~1.1x of the dump floor on 2 cores and stores ~10 % less than level 1 or pg_dump's gzip.
ZSTD_LEVEL = 3
ZSTD_THREADS = min(2, os.cpu_count() or 1)
LONG_TRANSACTION_SECONDS = 60
F_SETPIPE_SZ = 1031

ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class SourceInfo:
    server_version: str
    server_version_num: int
    database_size: int
    serializable_ok: bool


def inspect_source(ep: pgtools.Endpoint, dbname: str) -> SourceInfo:
    """Read the source's version and size, and decide if --serializable-deferrable is safe."""
    with pgtools.connect(ep, dbname) as conn:
        return _source_info(conn)


def _source_info(conn: psycopg.Connection[tuple[object, ...]]) -> SourceInfo:
    """A deferrable snapshot waits for concurrent serializable read-write transactions
    to end, and is impossible on a standby; use it only on a primary where no
    transaction has been open for long, so the wait is bounded.
    """
    row = conn.execute(
        "SELECT current_setting('server_version'), current_setting('server_version_num')::int,"
        " pg_database_size(current_database()), pg_is_in_recovery(),"
        " (SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
        "   AND xact_start < now() - make_interval(secs => %s))",
        (LONG_TRANSACTION_SECONDS,),
    ).fetchone()
    assert row is not None
    version, num, size, in_recovery, long_txns = row
    return SourceInfo(str(version), int(num), int(size), not in_recovery and not long_txns)  # type: ignore[call-overload]


_PRIVILEGE_QUERY = """
WITH user_objects AS (
  SELECT c.oid, c.relkind, format('%I.%I', n.nspname, c.relname) AS name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                    AND d.objid = c.oid AND d.deptype = 'e')
)
SELECT 'database ' || quote_ident(current_database())
  WHERE NOT has_database_privilege(current_database(), 'CONNECT')
UNION ALL
SELECT 'schema ' || quote_ident(nspname) FROM pg_namespace
  WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg_toast%'
    AND nspname NOT LIKE 'pg_temp%' AND NOT has_schema_privilege(oid, 'USAGE')
UNION ALL
SELECT 'table ' || name FROM user_objects
  WHERE relkind <> 'S' AND NOT has_table_privilege(oid, 'SELECT')
UNION ALL
SELECT 'sequence ' || name FROM user_objects
  WHERE CASE WHEN relkind = 'S' THEN NOT has_sequence_privilege(oid, 'SELECT') ELSE false END
"""


def missing_privileges(ep: pgtools.Endpoint, dbname: str) -> list[str]:
    """Objects the backup user cannot read (CONNECT, USAGE on schemas, SELECT on relations)."""
    with pgtools.connect(ep, dbname) as conn:
        return _missing_privileges(conn)


def _missing_privileges(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    return [str(r[0]) for r in conn.execute(_PRIVILEGE_QUERY).fetchall()]


def probe_source(ep: pgtools.Endpoint, dbname: str) -> tuple[SourceInfo, list[str]]:
    """What a backup needs to know of its source, read over one connection: the source's
    facts (`inspect_source`) and the objects the user cannot read (`missing_privileges`)."""
    with pgtools.connect(ep, dbname) as conn:
        return _source_info(conn), _missing_privileges(conn)


def dump_args(ep: pgtools.Endpoint, dbname: str, serializable: bool) -> list[str]:
    """pg_dump's argv: custom format, uncompressed (we compress), owners and ACLs kept."""
    args = [pgtools.tool("pg_dump"), "--format=custom", "--compress=0", "--lock-wait-timeout=300s"]
    if serializable:
        args.append("--serializable-deferrable")
    return [*args, f"--dbname={ep.conninfo(dbname)}"]


def check_tool_version(server_version_num: int) -> None:
    major, text = pgtools.tool_version("pg_dump")
    if major < server_version_num // 10000:
        raise UserError(
            f"The local pg_dump ({text}) is older than the server (major "
            f"{server_version_num // 10000}); pg_dump refuses to dump a newer server.",
            code=Code.UserErrorBackupToolVersionTooOld,
            recommended_action="Install the PostgreSQL client tools of the server's major version "
            "or newer on every pgvault worker (or set PGVAULT_PG_BINDIR).",
        )


def _compressed_chunks(
    proc: subprocess.Popen[bytes],
    stderr: pgtools.StderrTail,
    progress: ProgressFn,
    digest: hashlib._Hash,
    counters: dict[str, int],
) -> Iterator[bytes]:
    """Read pg_dump's stdout into a reused buffer, compress, hash, and yield."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=ZSTD_THREADS, write_checksum=True)
    cobj = cctx.compressobj()
    buf = bytearray(READ_SIZE)
    view = memoryview(buf)
    while True:
        n = proc.stdout.readinto(view)  # type: ignore[attr-defined]
        if not n:
            break
        counters["raw"] += n
        out = cobj.compress(view[:n])
        if out:
            digest.update(out)
            counters["stored"] += len(out)
            yield out
        progress(counters["raw"])
    rc = proc.wait()
    if rc != 0:
        raise BackupToolError(
            f"pg_dump failed (exit status {rc}): {stderr.summary()}",
            recommended_action="Check the server log and the backup user's privileges, "
            "then run the backup again.",
        )
    tail = cobj.flush()
    digest.update(tail)
    counters["stored"] += len(tail)
    yield tail


def run(
    ep: pgtools.Endpoint,
    dbname: str,
    server_name: str,
    location: Location,
    point_id: str,
    progress: ProgressFn,
    info: SourceInfo | None = None,
    catalog: dict[str, Any] | None = None,
) -> Manifest:
    """Dump `dbname` into `location`; returns the manifest (already stored, last), which
    carries `catalog` as given."""
    info = info or inspect_source(ep, dbname)
    check_tool_version(info.server_version_num)
    args = dump_args(ep, dbname, info.serializable_ok)
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=ep.env(),
        bufsize=0,
    )
    stderr = pgtools.StderrTail(proc.stderr, (ep.creds.password,))
    digest = hashlib.sha256()
    counters = {"raw": 0, "stored": 0}
    assert proc.stdout is not None
    try:
        location.put_stream(DUMP, _compressed_chunks(proc, stderr, progress, digest, counters))
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        raise
    finally:
        proc.stdout.close()  # stderr is closed by its drain thread
    manifest = source_manifest(
        ep,
        dbname,
        server_name,
        point_id,
        info,
        args,
        raw=counters["raw"],
        stored=counters["stored"],
        objects=[StoredObject(DUMP, counters["stored"], digest.hexdigest())],
        catalog=catalog,
    )
    location.put_bytes(MANIFEST, manifest.to_json())
    return manifest


def source_manifest(
    ep: pgtools.Endpoint,
    dbname: str,
    server_name: str,
    point_id: str,
    info: SourceInfo,
    args: list[str],
    *,
    raw: int,
    stored: int,
    objects: list[StoredObject],
    catalog: dict[str, Any] | None,
    **layout: Any,
) -> Manifest:
    """What every recovery point records of its source, the tool and its objects, whatever
    its layout (`layout`: the format's own fields, e.g. `version`). Connection and snapshot
    arguments are left out: they name a session, not how the point was made."""
    return Manifest(
        recoveryPointId=point_id,
        dbName=dbname,
        serverName=server_name,
        serverFQDN=f"{ep.host}:{ep.port}",
        usernameUsed=ep.creds.user,
        postgresVersion=info.server_version,
        serverVersionNum=info.server_version_num,
        backupToolPath=args[0],
        backupToolVersion=pgtools.tool_version("pg_dump")[1],
        backupToolArgs=[a for a in args[1:] if not a.startswith(("--dbname", "--snapshot"))],
        createdTime=datetime.now(UTC).isoformat(),
        dataSourceSize=info.database_size,
        bytesTransferred=raw,
        storedBytes=stored,
        objects=objects,
        compression={"algorithm": "zstd", "level": ZSTD_LEVEL, "contentChecksum": True},
        catalog=dict(catalog or {}),
        **layout,
    )
