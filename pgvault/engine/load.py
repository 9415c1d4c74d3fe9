"""Restore: verify a recovery point, then stream it into pg_restore or into a container.

Verification reads every object once and compares its sha256 with the manifest
before the target is touched; the restore stream hashes again, so an object that
changes in between still fails the job (and the caller drops what it created).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
import zstandard
from psycopg import sql

from pgvault.engine import pgtools
from pgvault.engine.manifest import DUMP, MANIFEST, Manifest
from pgvault.errors import Code, CorruptRecoveryPoint, PgVaultError, UserError
from pgvault.storage.backends import Location, pumped, put_new

WRITE_SIZE = 1 << 20
ProgressFn = Callable[[int], None]


def _corrupt(name: str, detail: str) -> CorruptRecoveryPoint:
    return CorruptRecoveryPoint(
        f"Recovery point object {name!r} failed verification ({detail}); nothing was restored.",
        recommended_action="Restore from another recovery point, and check the datastore's "
        "integrity.",
    )


def load_manifest(location: Location) -> Manifest:
    return Manifest.from_dict(json.loads(location.get_bytes(MANIFEST)))


def verify(location: Location, manifest: Manifest, progress: ProgressFn) -> None:
    """Read every object and check its size and sha256 against the manifest."""
    done = 0
    for obj in manifest.objects:
        digest, size = hashlib.sha256(), 0
        for chunk in location.get_stream(obj.name):
            digest.update(chunk)
            size += len(chunk)
            done += len(chunk)
            progress(done)
        if size != obj.size or digest.hexdigest() != obj.sha256:
            raise _corrupt(obj.name, "checksum mismatch" if size == obj.size else "size mismatch")


class _HashingReader(io.RawIOBase):
    """A file-like view of an object stream that hashes what it hands out."""

    def __init__(self, chunks: Iterator[bytes], progress: ProgressFn) -> None:
        self._chunks = chunks
        self._pending = b""
        self.digest = hashlib.sha256()
        self.size = 0
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self.digest.update(chunk)
            self.size += len(chunk)
            self._progress(self.size)
            self._pending = chunk
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def check(self, name: str, expected_sha: str, expected_size: int) -> None:
        if self.size != expected_size or self.digest.hexdigest() != expected_sha:
            raise _corrupt(name, "changed while restoring")


def decompressed(location: Location, manifest: Manifest, progress: ProgressFn) -> Iterator[bytes]:
    """The dump's bytes, decompressed in bounded pieces and verified at the end."""
    obj = manifest.object(DUMP)
    reader = _HashingReader(location.get_stream(DUMP), progress)
    dctx = zstandard.ZstdDecompressor()
    yield from dctx.read_to_iter(reader, read_size=WRITE_SIZE, write_size=WRITE_SIZE)  # type: ignore[arg-type]
    reader.check(DUMP, obj.sha256, obj.size)


@dataclass(frozen=True)
class TargetInfo:
    server_version_num: int
    database_exists: bool
    can_create_db: bool


def inspect_target(ep: pgtools.Endpoint, dbname: str) -> TargetInfo:
    with pgtools.connect(ep, ep.creds.dbname or "postgres") as conn:
        row = conn.execute(
            "SELECT current_setting('server_version_num')::int,"
            " EXISTS (SELECT 1 FROM pg_database WHERE datname = %s),"
            " (SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user)",
            (dbname,),
        ).fetchone()
    assert row is not None
    return TargetInfo(int(row[0]), bool(row[1]), bool(row[2]))  # type: ignore[call-overload]


def create_database(ep: pgtools.Endpoint, dbname: str) -> None:
    """CREATE DATABASE, with the two refusals a user can fix told apart; any other failure
    (a lost connection, a full disk) keeps its own type and message."""
    with pgtools.connect(ep, ep.creds.dbname or "postgres") as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        except psycopg.errors.DuplicateDatabase:
            raise UserError(
                f"Database {dbname!r} already exists on the target server.",
                code=Code.UserErrorDatabaseNameAlreadyInUse,
                recommended_action="Choose a new target database name.",
            ) from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise UserError(
                f"CREATE DATABASE {dbname!r} failed: {pgtools._first_line(str(exc))}",
                code=Code.UserErrorMissingDBPermissions,
                recommended_action=f"Grant the restore user CREATEDB: ALTER ROLE "
                f"{pgtools.quote_ident(ep.creds.user)} CREATEDB;",
            ) from None


def drop_database(ep: pgtools.Endpoint, dbname: str) -> None:
    """Drop a database this restore created (best effort, forcing other sessions off)."""
    with pgtools.connect(ep, ep.creds.dbname or "postgres") as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


def restore_args(ep: pgtools.Endpoint, dbname: str) -> list[str]:
    """pg_restore's argv: everything owned by the restoring user, no grants replayed."""
    return [
        pgtools.tool("pg_restore"),
        "--no-owner",
        "--no-acl",
        "--no-tablespaces",
        "--no-subscriptions",
        "--no-security-labels",
        "--exit-on-error",
        f"--dbname={ep.conninfo(dbname)}",
    ]


def into_database(
    ep: pgtools.Endpoint,
    dbname: str,
    location: Location,
    manifest: Manifest,
    progress: ProgressFn,
) -> None:
    """Stream the dump into pg_restore; raise with pg_restore's own error on failure."""
    args = restore_args(ep, dbname)
    proc = subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ep.env(),
        bufsize=0,
    )
    stderr = pgtools.StderrTail(proc.stderr, (ep.creds.password,))
    assert proc.stdin is not None
    try:
        try:
            for chunk in decompressed(location, manifest, progress):
                proc.stdin.write(chunk)
        except BrokenPipeError:
            pass
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if rc != 0:
        raise PgVaultError(
            f"pg_restore failed (exit status {rc}): {stderr.summary()}",
            code=Code.UserErrorRestoreFailed,
            recommended_action="Check that the restore user may create the objects in the dump "
            "(extensions, languages), or restore as files and run pg_restore yourself.",
        )


def _file_exists(name: str) -> UserError:
    return UserError(
        f"{name!r} already exists in the target container.",
        code=Code.UserErrorFileAlreadyExists,
        recommended_action="Choose another file prefix (restores never overwrite).",
    )


def into_files(
    location: Location,
    manifest: Manifest,
    target: Location,
    prefix: str,
    progress: ProgressFn,
    on_created: Callable[[list[str]], None] | None = None,
) -> list[str]:
    """Write `{prefix}.dump` (custom format, for pg_restore) and the manifest to `target`.

    Never overwrites: the dump's name is claimed first with an exclusive put (an empty
    object, then replaced by the streamed dump), and the manifest is written only if it
    does not exist; either name already taken fails with UserErrorFileAlreadyExists. On
    any failure only what this call created is removed. `on_created` hears the names
    this call created, as it creates them.
    """
    dump_name, manifest_name = f"{prefix}.dump", f"{prefix}.manifest.json"
    if target.exists(manifest_name):
        raise _file_exists(manifest_name)
    if not put_new(target, dump_name, b""):
        raise _file_exists(dump_name)
    created = [dump_name]
    try:
        if on_created is not None:
            on_created(list(created))
        target.put_stream(dump_name, pumped(lambda: decompressed(location, manifest, progress)))
        if not put_new(target, manifest_name, manifest.to_json()):
            raise _file_exists(manifest_name)
        created.append(manifest_name)
        if on_created is not None:
            on_created(list(created))
    except BaseException:
        for name in created:
            with contextlib.suppress(PgVaultError):
                target.delete(name)
        raise
    return [dump_name, manifest_name]
