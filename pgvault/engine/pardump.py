"""Backup, format 2: pg_dump's schema plus one checksummed object per table, one snapshot.

How (chosen by measurement, see README "How a backup and a restore work"):

1. A coordinating connection opens a read-only repeatable-read (or, when safe,
   serializable deferrable) transaction and exports its snapshot.
2. `pg_dump -Fc -Z0 --snapshot=S` writes its header and table of contents (every schema
   object with owners and ACLs, each table's COPY statement, sequence values, large-object
   entries) before any table data; the TOC is read off its stdout, the coordinator locks
   the dumped tables (ACCESS SHARE, as pg_dump does) while pg_dump still holds them, and
   pg_dump is stopped. The TOC is stored as the schema object.
3. N workers (N = cores, configurable) each run `psql` in the same snapshot with
   `COPY table (columns) TO STDOUT` (exactly the bytes pg_dump writes in a directory
   archive's data file), compressed with zstd and hashed while streaming into one object
   per table, largest tables first. Large objects are read by the coordinator in the same
   snapshot into one framed object.

Nothing is staged on local disk; memory per stream is the storage part size. The manifest
is written last and lists every object with its size and sha256.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import IO, Any

import psycopg
import zstandard
from psycopg import sql

from pgvault.engine import pgtools
from pgvault.engine import toc as tocmod
from pgvault.engine.dump import (
    F_SETPIPE_SZ,
    PIPE_SIZE,
    READ_SIZE,
    ZSTD_LEVEL,
    ZSTD_THREADS,
    ProgressFn,
    SourceInfo,
    check_tool_version,
    dump_args,
    inspect_source,
    source_manifest,
)
from pgvault.engine.manifest import (
    BLOBS,
    CONTENT_BLOBS,
    CONTENT_TABLE,
    CONTENT_TOC,
    FORMAT_PARALLEL,
    MANIFEST,
    SCHEMA,
    Manifest,
    StoredObject,
    table_object,
)
from pgvault.errors import BackupToolError
from pgvault.storage.backends import Location

#: Framing of the large-objects object: per object (oid, length) then `length` bytes.
BLOB_HEAD = struct.Struct("<IQ")
#: What pg_dump writes after a table's rows in a data file (so `pg_restore -f` scripts work).
COPY_END = b"\\.\n\n\n"
LO_READ = 1 << 20
#: zstd's multi-threaded job size: 1 MiB instead of its default (4 windows, 8 MiB at level 3)
#: keeps each stream's buffers small while N tables stream at once (measured on 2 streams:
#: +23 MB of peak RSS instead of +100 MB, same stored size).
JOB_SIZE = 1 << 20
INV_READ = 0x40000
#: Session settings pg_dump uses for its COPY (same text output of dates, floats).
COPY_OPTIONS = (
    "-c datestyle=ISO -c intervalstyle=postgres -c extra_float_digits=3 -c row_security=off "
    "-c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0"
)


def enabled(backup_format: int = 2) -> bool:
    """Format 2 needs a pg_dump whose archive layout `toc` reads (PostgreSQL 12-16);
    `backup_format` 1 (PGVAULT_BACKUP_FORMAT) keeps the single-stream format."""
    if backup_format == 1:
        return False
    return 12 <= pgtools.tool_version("pg_dump")[0] <= 16


def default_jobs() -> int:
    """Workers per backup or restore when the settings name none: the machine's cores."""
    return max(1, os.cpu_count() or 1)


@dataclass
class _Counters:
    lock: threading.Lock = field(default_factory=threading.Lock)
    raw: int = 0
    stored: int = 0

    def add(self, raw: int, stored: int) -> int:
        with self.lock:
            self.raw += raw
            self.stored += stored
            return self.raw


def _compress(
    source: Iterator[memoryview | bytes],
    digest: hashlib._Hash,
    counts: dict[str, int],
    total: _Counters,
    progress: ProgressFn,
) -> Iterator[bytes]:
    """zstd-compress and sha256 a stream of raw pieces (bounded memory)."""
    params = zstandard.ZstdCompressionParameters.from_level(
        ZSTD_LEVEL, threads=ZSTD_THREADS, job_size=JOB_SIZE, write_checksum=1
    )
    cctx = zstandard.ZstdCompressor(compression_params=params)
    cobj = cctx.compressobj()
    for piece in source:
        counts["raw"] += len(piece)
        out = cobj.compress(piece)
        if out:
            digest.update(out)
            counts["stored"] += len(out)
        progress(total.add(len(piece), len(out)))
        if out:
            yield out
    tail = cobj.flush()
    digest.update(tail)
    counts["stored"] += len(tail)
    total.add(0, len(tail))
    yield tail


def _pipe_pieces(pipe: IO[bytes]) -> Iterator[memoryview]:
    """A child's stdout in reused 1 MiB reads (the consumer copies before the next)."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
    buf = bytearray(READ_SIZE)
    view = memoryview(buf)
    while True:
        n = pipe.readinto(view)  # type: ignore[attr-defined]
        if not n:
            return
        yield view[:n]


def _store(
    location: Location,
    name: str,
    pieces: Iterator[memoryview | bytes],
    total: _Counters,
    progress: ProgressFn,
    content: str,
    dump_id: int | None,
) -> StoredObject:
    digest = hashlib.sha256()
    counts = {"raw": 0, "stored": 0}
    location.put_stream(name, _compress(pieces, digest, counts, total, progress))
    return StoredObject(name, counts["stored"], digest.hexdigest(), content, dump_id, counts["raw"])


def _tool_failed(tool: str, rc: int, stderr: pgtools.StderrTail) -> BackupToolError:
    return BackupToolError(
        f"{tool} failed (exit status {rc}): {stderr.summary()}",
        recommended_action="Check the server log and the backup user's privileges, "
        "then run the backup again.",
    )


def _start_schema_dump(ep: pgtools.Endpoint, args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=ep.env(),
        bufsize=0,
    )


def _read_schema(
    proc: subprocess.Popen[bytes], stderr: pgtools.StderrTail
) -> tuple[tocmod.Toc, bytes]:
    """pg_dump's header and TOC, read off its stdout before any table data follows."""
    assert proc.stdout is not None
    try:
        return tocmod.read_toc(_exact_reader(proc.stdout))
    except tocmod.TocFormatError:
        rc = proc.wait()
        raise _tool_failed("pg_dump", rc, stderr) from None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop pg_dump once its TOC has passed and the coordinator holds the locks."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _exact_reader(pipe: IO[bytes]) -> Callable[[int], bytes]:
    def read(n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            chunk = pipe.read(n - got)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    return read


def _begin_snapshot(conn: psycopg.Connection[tuple[object, ...]], serializable: bool) -> str:
    level = "SERIALIZABLE READ ONLY DEFERRABLE" if serializable else "REPEATABLE READ READ ONLY"
    conn.execute(f"BEGIN ISOLATION LEVEL {level}")
    conn.execute("SET LOCAL lock_timeout = '300s'")
    row = conn.execute("SELECT pg_export_snapshot()").fetchone()
    assert row is not None
    return str(row[0])


def _lock_tables(conn: psycopg.Connection[tuple[object, ...]], entries: list[tocmod.Entry]) -> None:
    names = [sql.Identifier(e.namespace or "public", e.tag or "") for e in entries]
    for i in range(0, len(names), 500):
        conn.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(
                sql.SQL(", ").join(names[i : i + 500])
            )
        )


def _sizes(conn: psycopg.Connection[tuple[object, ...]]) -> dict[tuple[str, str], tuple[int, int]]:
    """(bytes, row estimate) of every table: the largest are dumped first."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname, pg_table_size(c.oid), greatest(c.reltuples, 0)::bigint"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'm', 'f')"
    ).fetchall()
    return {(str(r[0]), str(r[1])): (int(r[2]), int(r[3])) for r in rows}  # type: ignore[call-overload]


def _filters(conn: psycopg.Connection[tuple[object, ...]]) -> dict[tuple[str, str], str]:
    """Extension configuration tables dumped with a WHERE condition (as pg_dump does)."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname, x.cond FROM pg_extension e,"
        " unnest(e.extconfig, e.extcondition) AS x(rel, cond)"
        " JOIN pg_class c ON c.oid = x.rel JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE coalesce(x.cond, '') <> ''"
    ).fetchall()
    return {(str(r[0]), str(r[1])): str(r[2]) for r in rows}


def _copy_sql(entry: tocmod.Entry, filters: dict[tuple[str, str], str]) -> str:
    cond = filters.get((entry.namespace or "", entry.tag or ""))
    stmt = tocmod.copy_out_sql(entry)
    if not cond:
        return stmt
    head, cols = stmt[: -len(" TO STDOUT")].split(" (", 1) if " (" in stmt else (stmt, "")
    table = head[len("COPY ") :]
    select = (
        f"SELECT {cols.rstrip(')')} FROM ONLY {table} {cond}"
        if cols
        else f"SELECT * FROM ONLY {table} {cond}"
    )
    return f"COPY ({select}) TO STDOUT"


def _copy_table(
    ep: pgtools.Endpoint,
    dbname: str,
    snapshot: str,
    encoding: str,
    statement: str,
    location: Location,
    entry: tocmod.Entry,
    total: _Counters,
    progress: ProgressFn,
) -> StoredObject:
    """One table's data: psql's COPY TO STDOUT in the snapshot, into its own object."""
    env = {**ep.env(), "PGOPTIONS": COPY_OPTIONS, "PGCLIENTENCODING": encoding}
    args = [
        pgtools.tool("psql"),
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        "-c",
        f"SET TRANSACTION SNAPSHOT '{snapshot}'",
        "-c",
        statement,
        "-c",
        "COMMIT",
        f"--dbname={ep.conninfo(dbname)}",
    ]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        bufsize=0,
    )
    stderr = pgtools.StderrTail(proc.stderr, (ep.creds.password,))
    assert proc.stdout is not None

    def pieces() -> Iterator[memoryview | bytes]:
        assert proc.stdout is not None
        yield from _pipe_pieces(proc.stdout)
        rc = proc.wait()
        if rc != 0:
            raise _tool_failed("psql COPY", rc, stderr)
        yield COPY_END

    try:
        return _store(
            location,
            table_object(entry.dump_id),
            pieces(),
            total,
            progress,
            CONTENT_TABLE,
            entry.dump_id,
        )
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        raise
    finally:
        proc.stdout.close()


def _blob_pieces(conn: psycopg.Connection[tuple[object, ...]], oids: list[int]) -> Iterator[bytes]:
    """Every large object in the snapshot: (oid, length) then its bytes, 1 MiB at a time."""
    for oid in oids:
        row = conn.execute("SELECT lo_open(%s, %s)", (oid, INV_READ)).fetchone()
        assert row is not None
        fd = int(row[0])  # type: ignore[call-overload]
        end = conn.execute("SELECT lo_lseek64(%s, 0, 2)", (fd,)).fetchone()
        assert end is not None
        conn.execute("SELECT lo_lseek64(%s, 0, 0)", (fd,))
        yield BLOB_HEAD.pack(oid, int(end[0]))  # type: ignore[call-overload]
        while True:
            got = conn.execute("SELECT loread(%s, %s)", (fd, LO_READ)).fetchone()
            assert got is not None
            data = bytes(got[0])  # type: ignore[call-overload]
            if not data:
                break
            yield data
        conn.execute("SELECT lo_close(%s)", (fd,))


def run(
    ep: pgtools.Endpoint,
    dbname: str,
    server_name: str,
    location: Location,
    point_id: str,
    progress: ProgressFn,
    info: SourceInfo | None = None,
    catalog: dict[str, Any] | None = None,
    jobs: int | None = None,
) -> Manifest:
    """Dump `dbname` into `location` as a format-2 point; returns the stored manifest, which
    carries `catalog` as given (opaque here: what rebuilds the metadata from the datastore)."""
    info = info or inspect_source(ep, dbname)
    check_tool_version(info.server_version_num)
    jobs = jobs or default_jobs()
    total = _Counters()
    with pgtools.connect(ep, dbname) as conn:
        snapshot = _begin_snapshot(conn, info.serializable_ok)
        args = dump_args(ep, dbname, serializable=False)
        args.insert(-1, f"--snapshot={snapshot}")
        proc = _start_schema_dump(ep, args)
        stderr = pgtools.StderrTail(proc.stderr, (ep.creds.password,))
        try:
            toc, raw = _read_schema(proc, stderr)
            data_entries = toc.table_data()
            _lock_tables(conn, data_entries)
        finally:
            _stop(proc)
        encoding_row = conn.execute(
            "SELECT pg_encoding_to_char(encoding) FROM pg_database"
            " WHERE datname = current_database()"
        ).fetchone()
        assert encoding_row is not None
        encoding = str(encoding_row[0])
        sizes, filters = _sizes(conn), _filters(conn)
        schema_obj = _store(location, SCHEMA, iter([raw]), total, progress, CONTENT_TOC, None)
        data_entries.sort(key=lambda e: -sizes.get((e.namespace or "", e.tag or ""), (0, 0))[0])
        objects = _dump_data(
            ep,
            dbname,
            snapshot,
            encoding,
            conn,
            toc,
            data_entries,
            filters,
            location,
            total,
            progress,
            jobs,
        )
        conn.execute("COMMIT")
    ids = {e.dump_id: (e.namespace or "", e.tag or "") for e in data_entries}
    for obj in objects:
        if obj.dumpId in ids:
            obj.rowEstimate = sizes.get(ids[obj.dumpId], (0, 0))[1]
    manifest = source_manifest(
        ep,
        dbname,
        server_name,
        point_id,
        info,
        args,
        raw=total.raw,
        stored=total.stored,
        objects=[schema_obj, *objects],
        catalog=catalog,
        version=FORMAT_PARALLEL,
        backupDumpFormat="DIRECTORY",
    )
    location.put_bytes(MANIFEST, manifest.to_json())
    return manifest


def _dump_data(
    ep: pgtools.Endpoint,
    dbname: str,
    snapshot: str,
    encoding: str,
    conn: psycopg.Connection[tuple[object, ...]],
    toc: tocmod.Toc,
    entries: list[tocmod.Entry],
    filters: dict[tuple[str, str], str],
    location: Location,
    total: _Counters,
    progress: ProgressFn,
    jobs: int,
) -> list[StoredObject]:
    """Table data in `jobs` workers (largest first), large objects beside them; the first
    failure cancels what has not started and is raised once the running ones end."""
    blobs = [e for e in toc.entries if e.desc == "BLOBS"]
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="pgvault-dump") as pool:
        futures: list[Future[StoredObject]] = []
        if blobs:
            futures.append(
                pool.submit(
                    _store,
                    location,
                    BLOBS,
                    _blob_pieces(conn, toc.blob_oids()),
                    total,
                    progress,
                    CONTENT_BLOBS,
                    blobs[0].dump_id,
                )
            )
        for entry in entries:
            futures.append(
                pool.submit(
                    _copy_table,
                    ep,
                    dbname,
                    snapshot,
                    encoding,
                    _copy_sql(entry, filters),
                    location,
                    entry,
                    total,
                    progress,
                )
            )
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in done if f.exception() is not None]
        if failed:
            for f in futures:
                f.cancel()
            wait(futures)
            raise failed[0].exception()  # type: ignore[misc]
    objects = [f.result() for f in futures]
    return objects
