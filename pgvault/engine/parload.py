"""Restore, format 2: one read of the datastore, checksums verified while streaming.

As database: a private temporary directory holds a directory-format archive whose
`toc.dat` is the stored TOC (rewritten, see `toc`), and whose data files are named pipes.
`pg_restore -Fd -j N` reads it as it would a local dump: pre-data, then table data in N
connections, then indexes, constraints and triggers in parallel in dependency order.
Each pipe is fed by a thread that streams its object from the datastore, hashing the
compressed bytes and decompressing them into the pipe only when pg_restore opens it; so
no table data touches local disk and memory stays bounded. An object whose size or
sha256 differs from the manifest stops pg_restore (its process group is killed before
the pipe is closed, so the table's COPY never ends) and the job drops the database.

As files: the same archive written to a container under temporary names, every object
verified, then committed (toc.dat last) so that `pg_restore -Fd -j N DIR` reads it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from pgvault.engine import pgtools
from pgvault.engine import toc as tocmod
from pgvault.engine.load import (
    WRITE_SIZE,
    ProgressFn,
    _corrupt,
    _file_exists,
    _HashingReader,
    restore_args,
)
from pgvault.engine.manifest import BLOBS, SCHEMA, Manifest, StoredObject, table_object
from pgvault.engine.pardump import BLOB_HEAD, default_jobs
from pgvault.errors import Code, CorruptRecoveryPoint, PgVaultError
from pgvault.storage.backends import Location, pumped, put_new

F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20


@dataclass
class _Progress:
    fn: ProgressFn
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: int = 0

    def add(self, n: int) -> None:
        with self.lock:
            self.done += n
            self.fn(self.done)


def _object_stream(location: Location, obj: StoredObject, progress: _Progress) -> Iterator[bytes]:
    """An object's decompressed bytes; raises CorruptRecoveryPoint at the end if its size or
    sha256 is not the manifest's (or mid-way if zstd's own frame checksum fails)."""
    last = [0]

    def counted(n: int) -> None:
        progress.add(n - last[0])
        last[0] = n

    reader = _HashingReader(location.get_stream(obj.name), counted)
    dctx = zstandard.ZstdDecompressor()
    try:
        yield from dctx.read_to_iter(reader, read_size=WRITE_SIZE, write_size=WRITE_SIZE)  # type: ignore[arg-type]
    except zstandard.ZstdError as exc:
        raise _corrupt(obj.name, f"zstd: {exc}") from None
    reader.check(obj.name, obj.sha256, obj.size)


def load_toc(location: Location, manifest: Manifest) -> tocmod.Toc:
    """The point's TOC (the small schema object), verified against the manifest."""
    obj = manifest.object(SCHEMA)
    data = b"".join(_object_stream(location, obj, _Progress(lambda _n: None)))
    return tocmod.parse(data)


def contents(location: Location, manifest: Manifest) -> dict[str, Any]:
    """What a format-2 point holds, from its stored TOC and manifest: schemas, tables with
    their data's size (uncompressed and stored) and row estimate, sequences, large objects."""
    toc = load_toc(location, manifest)
    by_id = {o.dumpId: o for o in manifest.objects if o.dumpId is not None}
    data = {(e.namespace, e.tag): by_id.get(e.dump_id) for e in toc.table_data()}
    tables = []
    for e in toc.entries:
        if e.desc != "TABLE":
            continue
        obj = data.get((e.namespace, e.tag))
        tables.append(
            {
                "schema": e.namespace,
                "name": e.tag,
                "owner": e.owner,
                "dataBytes": obj.rawSize if obj else 0,
                "storedBytes": obj.size if obj else 0,
                "rowEstimate": obj.rowEstimate if obj else 0,
            }
        )
    schemas = sorted(
        {e.tag or "" for e in toc.entries if e.desc == "SCHEMA"}
        | {t["schema"] or "" for t in tables}
    )
    return {
        "schemas": schemas,
        "tables": tables,
        "sequences": sum(1 for e in toc.entries if e.desc == "SEQUENCE"),
        "largeObjects": len(toc.blob_oids()),
        "objects": len(toc.entries),
    }


# -- selection (table-level restore) -------------------------------------------------------


#: Entries that stand for a relation or hang off one: never pulled in as a dependency of
#: something else (a foreign key to a table not chosen is left out, as pg_restore -L would).
_RELATION_KINDS = {
    "TABLE",
    "VIEW",
    "MATERIALIZED VIEW",
    "FOREIGN TABLE",
    "TABLE DATA",
    "CONSTRAINT",
    "FK CONSTRAINT",
    "INDEX",
    "TRIGGER",
    "RULE",
    "POLICY",
    "ROW SECURITY",
    "MATERIALIZED VIEW DATA",
    "TABLE ATTACH",
    "INDEX ATTACH",
    "DEFAULT",
    "CHECK CONSTRAINT",
    "STATISTICS",
    "PUBLICATION TABLE",
}
_TOP_LEVEL = {"TABLE", "VIEW", "MATERIALIZED VIEW", "FOREIGN TABLE", "BLOB", "BLOBS", "DATABASE"}
_SETTINGS = {"ENCODING", "STDSTRINGS", "SEARCHPATH"}


def select(toc: tocmod.Toc, tables: list[str], schemas: list[str]) -> set[int]:
    """The dump ids a partial restore needs, as a `pg_restore -L` list would hold them: the
    chosen tables (`schema.table`, their partitions and inheritance children) and every
    table of the chosen schemas; what they depend on (schemas, types, functions,
    extensions, a parent table's definition); and what hangs off them alone (data,
    sequences and their values, indexes, constraints, triggers with their functions,
    comments). Large objects and foreign keys to tables not chosen are left out."""
    by_id = {e.dump_id: e for e in toc.entries}
    wanted = {tuple(t.split(".", 1)) for t in tables}
    chosen = {
        e.dump_id
        for e in toc.entries
        if e.desc == "TABLE" and ((e.namespace, e.tag) in wanted or e.namespace in schemas)
    }
    grown = True
    while grown:  # partitions and inheritance children come with their parent
        more = {
            e.dump_id
            for e in toc.entries
            if e.desc == "TABLE" and e.dump_id not in chosen and any(d in chosen for d in e.deps)
        }
        chosen |= more
        grown = bool(more)
    keep = set(chosen) | {e.dump_id for e in toc.entries if e.desc in _SETTINGS}

    def pull(start: set[int]) -> None:
        stack = list(start)
        while stack:
            for dep in by_id[stack.pop()].deps:
                if dep in by_id and dep not in keep and by_id[dep].desc != "TABLE DATA":
                    keep.add(dep)
                    stack.append(dep)

    pull(chosen)
    anchors = set(chosen)
    changed = True
    while changed:
        changed = False
        for e in toc.entries:
            if e.dump_id in keep or (e.desc or "") in _TOP_LEVEL:
                continue
            hangs = any(d in anchors for d in e.deps) or (
                e.desc == "SEQUENCE SET" and all(d in keep for d in e.deps)
            )
            blocked = any(
                d not in keep and d in by_id and (by_id[d].desc or "") in _RELATION_KINDS
                for d in e.deps
            )
            if hangs and not blocked:
                keep.add(e.dump_id)
                anchors.add(e.dump_id)
                pull({e.dump_id})
                changed = True
    return keep


# -- restore as database ---------------------------------------------------------------------


class _Feeders:
    """Threads that fill the archive's named pipes as pg_restore opens them."""

    def __init__(self, location: Location, progress: _Progress) -> None:
        self.location = location
        self.progress = progress
        self.cancelled = threading.Event()
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._pending: set[Path] = set()
        self.on_error: Callable[[], None] = lambda: None

    def start(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=self._guard, args=(target,), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _guard(self, target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:
            if self.cancelled.is_set() and isinstance(exc, OSError | BrokenPipeError):
                return
            with self._lock:
                if self.error is None or (
                    isinstance(exc, CorruptRecoveryPoint)
                    and not isinstance(self.error, CorruptRecoveryPoint)
                ):
                    self.error = exc
            self.on_error()

    def _open(self, path: Path) -> int | None:
        with self._lock:
            self._pending.add(path)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)  # blocks until pg_restore reads
        finally:
            with self._lock:
                self._pending.discard(path)
        if self.cancelled.is_set():
            os.close(fd)
            return None
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
        return fd

    def write_all(self, fd: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]

    def table(self, path: Path, obj: StoredObject) -> None:
        fd = self._open(path)
        if fd is None:
            return
        chunks = _object_stream(self.location, obj, self.progress)
        try:
            for chunk in chunks:
                if self.cancelled.is_set():
                    return
                try:
                    self.write_all(fd, chunk)
                except BrokenPipeError:
                    # pg_restore stopped reading (it failed): finish the object's checksum,
                    # so that a corrupt object is reported as such, not as a COPY error.
                    for _ in chunks:
                        pass
                    raise
        except BaseException:
            # A mismatch, a storage error: stop pg_restore before this pipe's end could
            # complete the table's COPY with what it got so far.
            self.on_error()
            raise
        finally:
            os.close(fd)

    def blobs(self, directory: Path, obj: StoredObject, oids: list[int]) -> None:
        stream = _Frames(_object_stream(self.location, obj, self.progress))
        for expected in oids:
            oid, length = BLOB_HEAD.unpack(stream.exact(BLOB_HEAD.size))
            if oid != expected:
                raise _corrupt(obj.name, f"large object {oid} where {expected} was listed")
            fd = self._open(directory / f"blob_{oid}.dat")
            if fd is None:
                return
            try:
                for piece in stream.pieces(length):
                    self.write_all(fd, piece)
            except BaseException:
                self.on_error()
                raise
            finally:
                os.close(fd)
        stream.finish()

    def release(self) -> None:
        """Unblock feeders still waiting for a reader (pg_restore ended without one)."""
        self.cancelled.set()
        for _ in range(3):
            with self._lock:
                pending = list(self._pending)
            for path in pending:
                with contextlib.suppress(OSError):
                    os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
            for t in self._threads:
                t.join(timeout=1)
            if not any(t.is_alive() for t in self._threads):
                return

    def join(self) -> None:
        for t in self._threads:
            t.join()


class _Frames:
    """Reads the large-objects framing out of a stream of decompressed chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def _fill(self) -> bool:
        chunk = next(self._chunks, None)
        if chunk is None:
            return False
        self._buf += chunk
        return True

    def exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            if not self._fill():
                raise _corrupt(BLOBS, "truncated")
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def pieces(self, n: int) -> Iterator[bytes]:
        while n:
            if not self._buf and not self._fill():
                raise _corrupt(BLOBS, "truncated")
            take = self._buf[:n]
            self._buf = self._buf[len(take) :]
            n -= len(take)
            yield take

    def finish(self) -> None:
        while self._fill():
            pass
        if self._buf:
            raise _corrupt(BLOBS, "trailing bytes")


def _archive_dir(toc: tocmod.Toc, keep: set[int] | None) -> Path:
    """A private directory with toc.dat, blobs.toc and one named pipe per data file."""
    root = Path(tempfile.mkdtemp(prefix="pgvault-restore-"))
    (root / "toc.dat").write_bytes(tocmod.directory_toc(toc))
    for entry in toc.table_data():
        if keep is None or entry.dump_id in keep:
            os.mkfifo(root / f"{entry.dump_id}.dat", 0o600)
    if toc.has_blobs_entry() and keep is None:
        oids = toc.blob_oids()
        (root / "blobs.toc").write_bytes(tocmod.blobs_toc(oids))
        for oid in oids:
            os.mkfifo(root / f"blob_{oid}.dat", 0o600)
    return root


def _list_file(root: Path, toc: tocmod.Toc, keep: set[int]) -> Path:
    path = root / "restore.list"
    path.write_text("".join(f"{e.dump_id}\n" for e in toc.entries if e.dump_id in keep))
    return path


def into_database(
    ep: pgtools.Endpoint,
    dbname: str,
    location: Location,
    manifest: Manifest,
    progress: ProgressFn,
    jobs: int | None = None,
    tables: list[str] | None = None,
    schemas: list[str] | None = None,
) -> None:
    """Restore a format-2 point into the (new, empty) database `dbname`."""
    toc = load_toc(location, manifest)
    keep = select(toc, tables or [], schemas or []) if (tables or schemas) else None
    if keep is not None and not any(e.desc == "TABLE" and e.dump_id in keep for e in toc.entries):
        raise PgVaultError(
            "None of the tables or schemas to restore is in the recovery point.",
            code=Code.UserErrorRestoreFailed,
            recommended_action="List the point's contents (recovery-point contents) and name "
            "tables as schema.table.",
        )
    sizes = {o.dumpId: o.rawSize or o.size for o in manifest.objects if o.dumpId is not None}
    ordered, old_id = tocmod.largest_first(toc, sizes)
    if keep is not None:
        new_id = {old: new for new, old in old_id.items()}
        keep = {new_id.get(i, i) for i in keep}
    root = _archive_dir(ordered, keep)
    try:
        _run_pg_restore(ep, dbname, location, manifest, ordered, old_id, keep, root, progress, jobs)
    finally:
        for child in root.iterdir():
            child.unlink()
        root.rmdir()


def _run_pg_restore(
    ep: pgtools.Endpoint,
    dbname: str,
    location: Location,
    manifest: Manifest,
    toc: tocmod.Toc,
    old_id: dict[int, int],
    keep: set[int] | None,
    root: Path,
    progress: ProgressFn,
    jobs: int | None,
) -> None:
    args = restore_args(ep, dbname)
    args[1:1] = ["--format=directory", f"--jobs={jobs or default_jobs()}"]
    if keep is not None:
        args.insert(1, f"--use-list={_list_file(root, toc, keep)}")
    args.append(str(root))
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ep.env(),
        start_new_session=True,
    )
    stderr = pgtools.StderrTail(proc.stderr, (ep.creds.password,))
    feeders = _Feeders(location, _Progress(progress))

    def stop() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    feeders.on_error = stop
    try:
        for entry in toc.table_data():
            if keep is None or entry.dump_id in keep:
                obj = manifest.object(table_object(old_id.get(entry.dump_id, entry.dump_id)))
                path = root / f"{entry.dump_id}.dat"
                feeders.start(functools.partial(feeders.table, path, obj))
        if toc.has_blobs_entry() and keep is None:
            obj = manifest.object(BLOBS)
            feeders.start(lambda: feeders.blobs(root, obj, toc.blob_oids()))
        rc = proc.wait()
    except BaseException:
        stop()
        proc.wait()
        feeders.release()
        raise
    feeders.release()
    if isinstance(feeders.error, CorruptRecoveryPoint) or (feeders.error and rc == 0):
        raise feeders.error
    if rc != 0:
        raise PgVaultError(
            f"pg_restore failed (exit status {rc}): {stderr.summary()}",
            code=Code.UserErrorRestoreFailed,
            recommended_action="Check that the restore user may create the objects in the dump "
            "(extensions, languages), or restore as files and run pg_restore yourself.",
        )


# -- restore as files --------------------------------------------------------------------------


def file_names(prefix: str, toc: tocmod.Toc) -> list[str]:
    """The files of the directory archive a restore writes, toc.dat last."""
    names = [f"{prefix}/{e.dump_id}.dat" for e in toc.table_data()]
    if toc.has_blobs_entry():
        names += [f"{prefix}/blob_{oid}.dat" for oid in toc.blob_oids()]
        names.append(f"{prefix}/blobs.toc")
    return [*names, f"{prefix}/toc.dat"]


def into_files(
    location: Location,
    manifest: Manifest,
    target: Location,
    prefix: str,
    progress: ProgressFn,
    on_created: Callable[[list[str]], None] | None = None,
) -> list[str]:
    """Write `{prefix}/` (a directory-format archive: toc.dat, N.dat, blobs) and
    `{prefix}.manifest.json` to `target`; every file first under a `.partial` name,
    renamed into place (toc.dat last, then the manifest) only after every object's
    checksum matched. Never overwrites; on failure removes only what it created."""
    toc = load_toc(location, manifest)
    manifest_name = f"{prefix}.manifest.json"
    finals = file_names(prefix, toc)
    for name in [*finals, manifest_name]:
        if target.exists(name):
            raise _file_exists(name)
    created: list[str] = []

    def note(name: str) -> None:
        created.append(name)
        if on_created is not None:
            on_created(list(created))

    feed = _Progress(progress)
    try:
        for entry in toc.table_data():
            name = f"{prefix}/{entry.dump_id}.dat.partial"
            note(name)
            obj = manifest.object(table_object(entry.dump_id))
            target.put_stream(name, pumped(functools.partial(_object_stream, location, obj, feed)))
        if toc.has_blobs_entry():
            _blob_files(
                location, manifest.object(BLOBS), toc.blob_oids(), target, prefix, feed, note
            )
            note(f"{prefix}/blobs.toc.partial")
            target.put_bytes(f"{prefix}/blobs.toc.partial", tocmod.blobs_toc(toc.blob_oids()))
        note(f"{prefix}/toc.dat.partial")
        target.put_bytes(f"{prefix}/toc.dat.partial", tocmod.directory_toc(toc))
        for final in finals:  # every checksum matched: commit, toc.dat last
            if not target.commit(f"{final}.partial", final):
                raise _file_exists(final)
            created.remove(f"{final}.partial")
            note(final)
        if not put_new(target, manifest_name, manifest.to_json()):
            raise _file_exists(manifest_name)
        note(manifest_name)
    except BaseException:
        for name in created:
            with contextlib.suppress(PgVaultError):
                target.delete(name)
        raise
    return [*finals, manifest_name]


def _blob_files(
    location: Location,
    obj: StoredObject,
    oids: list[int],
    target: Location,
    prefix: str,
    feed: _Progress,
    note: Callable[[str], None],
) -> None:
    frames = _Frames(_object_stream(location, obj, feed))
    for expected in oids:
        oid, length = BLOB_HEAD.unpack(frames.exact(BLOB_HEAD.size))
        if oid != expected:
            raise _corrupt(obj.name, f"large object {oid} where {expected} was listed")
        name = f"{prefix}/blob_{oid}.dat.partial"
        note(name)
        target.put_stream(name, pumped(functools.partial(frames.pieces, length)))
    frames.finish()
