"""pg_dump's archive table of contents (TOC): read it from a custom-format stream, write it
back as a directory-format `toc.dat`.

A recovery point keeps pg_dump's own TOC (every schema object with its owner and ACL,
the COPY statement of every table's data, sequence values, large-object entries) and
stores each table's data as a separate object. The directory format (`pg_restore -Fd`)
differs from the custom one only in its header's format byte and in each entry's
trailing field (a data file name instead of a data offset), so the TOC pg_dump wrote is
rewritten, never re-synthesised: pg_restore reads exactly what pg_dump decided.

Archive versions 1.14 (PostgreSQL 12-15) and 1.15 (16) are understood; anything else
makes the backup fall back to the single-stream format.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, replace

ARCH_CUSTOM = 1
#: pg_dump writes 'tar' (3) in a directory archive's toc.dat: the two are compatible.
ARCH_DIRECTORY = 3
SUPPORTED_VERSIONS = ((1, 14), (1, 15))
SECTION_NAMES = {1: "none", 2: "pre-data", 3: "data", 4: "post-data"}


class TocFormatError(ValueError):
    """The bytes are not a TOC this module understands."""


@dataclass
class Entry:
    dump_id: int
    had_dumper: int
    table_oid: str | None
    oid: str | None
    tag: str | None
    desc: str | None
    section: int
    defn: str | None
    drop_stmt: str | None
    copy_stmt: str | None
    namespace: str | None
    tablespace: str | None
    tableam: str | None
    owner: str | None
    with_oids: str | None
    deps: list[int] = field(default_factory=list)
    #: The format-specific trailing field (custom: offset flag + offset; directory: name).
    extra: bytes = b""

    @property
    def data_file(self) -> str | None:
        """The file that holds this entry's data in a directory-format archive."""
        if self.desc == "BLOBS":
            return "blobs.toc"
        return f"{self.dump_id}.dat" if self.had_dumper else None


@dataclass
class Toc:
    version: tuple[int, int, int]
    int_size: int
    off_size: int
    fmt: int
    #: Header bytes after the format byte (compression, creation time, names, versions).
    header_rest: bytes
    entries: list[Entry]

    def table_data(self) -> list[Entry]:
        return [e for e in self.entries if e.desc == "TABLE DATA" and e.had_dumper]

    def blob_oids(self) -> list[int]:
        return [int(e.tag or 0) for e in self.entries if e.desc == "BLOB"]

    def has_blobs_entry(self) -> bool:
        return any(e.desc == "BLOBS" for e in self.entries)


class _Reader:
    """Reads archive primitives from a byte source (`read(n)` returning exactly n bytes)."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self.int_size = 4
        self.raw = bytearray()

    def take(self, n: int) -> bytes:
        data = self._read(n)
        if len(data) != n:
            raise TocFormatError("archive ended inside its table of contents")
        self.raw += data
        return data

    def byte(self) -> int:
        return self.take(1)[0]

    def int(self) -> int:
        sign = self.byte()
        value = int.from_bytes(self.take(self.int_size), "little")
        return -value if sign else value

    def str(self) -> str | None:
        n = self.int()
        if n < 0:
            return None
        return self.take(n).decode("utf-8", errors="surrogateescape")


def read_toc(read: Callable[[int], bytes]) -> tuple[Toc, bytes]:
    """Parse header and TOC from `read`; returns the TOC and the exact bytes consumed."""
    r = _Reader(read)
    if r.take(5) != b"PGDMP":
        raise TocFormatError("not a PostgreSQL archive")
    version = (r.byte(), r.byte(), r.byte())
    if version[:2] not in SUPPORTED_VERSIONS:
        raise TocFormatError(f"archive version {version} is not supported")
    r.int_size, off_size, fmt = r.byte(), r.byte(), r.byte()
    start = len(r.raw)
    if version[:2] >= (1, 15):
        r.byte()  # compression algorithm
    else:
        r.int()  # compression level
    for _ in range(7):
        r.int()  # creation time
    for _ in range(3):
        r.str()  # database name, server version, pg_dump version
    header_rest = bytes(r.raw[start:])
    count = r.int()
    entries = [_read_entry(r, fmt, off_size) for _ in range(count)]
    return Toc(version, r.int_size, off_size, fmt, header_rest, entries), bytes(r.raw)


def _read_entry(r: _Reader, fmt: int, off_size: int) -> Entry:
    dump_id, had_dumper = r.int(), r.int()
    table_oid, oid, tag, desc = r.str(), r.str(), r.str(), r.str()
    section = r.int()
    defn, drop_stmt, copy_stmt, namespace, tablespace = (r.str() for _ in range(5))
    tableam, owner, with_oids = r.str(), r.str(), r.str()
    deps: list[int] = []
    while (dep := r.str()) is not None:
        deps.append(int(dep))
    if fmt == ARCH_CUSTOM:
        extra = r.take(1 + off_size)
    elif fmt == ARCH_DIRECTORY:
        mark = len(r.raw)
        r.str()
        extra = bytes(r.raw[mark:])
    else:
        raise TocFormatError(f"archive format {fmt} is not supported")
    return Entry(
        dump_id,
        had_dumper,
        table_oid,
        oid,
        tag,
        desc,
        section,
        defn,
        drop_stmt,
        copy_stmt,
        namespace,
        tablespace,
        tableam,
        owner,
        with_oids,
        deps,
        extra,
    )


def parse(data: bytes) -> Toc:
    """A TOC from bytes held in memory (a stored schema object)."""
    buf = io.BytesIO(data)
    return read_toc(buf.read)[0]


class _Writer:
    def __init__(self, int_size: int) -> None:
        self.out = bytearray()
        self.int_size = int_size

    def int(self, value: int) -> None:
        self.out.append(1 if value < 0 else 0)
        self.out += abs(value).to_bytes(self.int_size, "little")

    def str(self, value: str | None) -> None:
        if value is None:
            self.int(-1)
            return
        data = value.encode("utf-8", errors="surrogateescape")
        self.int(len(data))
        self.out += data


def _directory_extra(w_int_size: int, entry: Entry) -> bytes:
    w = _Writer(w_int_size)
    w.str(entry.data_file or "")
    return bytes(w.out)


def directory_toc(toc: Toc, keep: Callable[[Entry], bool] | None = None) -> bytes:
    """The `toc.dat` of a directory-format archive with the same entries (all, or those
    `keep` accepts). Uncompressed: the header's compression field becomes 0/none."""
    w = _Writer(toc.int_size)
    w.out += b"PGDMP" + bytes([*toc.version, toc.int_size, toc.off_size, ARCH_DIRECTORY])
    rest = _Reader(io.BytesIO(toc.header_rest).read)
    rest.int_size = toc.int_size
    if toc.version[:2] >= (1, 15):
        rest.byte()
        w.out.append(0)
    else:
        rest.int()
        w.int(0)
    w.out += toc.header_rest[len(rest.raw) :]
    entries = [e for e in toc.entries if keep is None or keep(e)]
    w.int(len(entries))
    for e in entries:
        w.int(e.dump_id)
        w.int(e.had_dumper)
        for text in (e.table_oid, e.oid, e.tag, e.desc):
            w.str(text)
        w.int(e.section)
        for text in (e.defn, e.drop_stmt, e.copy_stmt, e.namespace, e.tablespace, e.tableam):
            w.str(text)
        w.str(e.owner)
        w.str(e.with_oids)
        for dep in e.deps:
            w.str(str(dep))
        w.str(None)
        w.out += _directory_extra(toc.int_size, e)
    return bytes(w.out)


def largest_first(toc: Toc, sizes: dict[int, int]) -> tuple[Toc, dict[int, int]]:
    """The TOC with its TABLE DATA dump ids permuted so that larger data has smaller ids,
    and the map new id -> original id. pg_restore -j starts the largest data first, sizing
    each by its file; named pipes have no size, and ties go to the smaller dump id."""
    data = [e.dump_id for e in toc.entries if e.desc == "TABLE DATA"]
    by_size = sorted(data, key=lambda i: (-sizes.get(i, 0), i))
    new_of = dict(zip(by_size, sorted(data), strict=True))
    entries = [
        replace(
            e,
            dump_id=new_of.get(e.dump_id, e.dump_id),
            deps=[new_of.get(d, d) for d in e.deps],
        )
        for e in toc.entries
    ]
    return replace(toc, entries=entries), {new: old for old, new in new_of.items()}


def blobs_toc(oids: list[int]) -> bytes:
    """The `blobs.toc` of a directory-format archive: one `oid blob_oid.dat` line each."""
    return b"".join(f"{oid} blob_{oid}.dat\n".encode() for oid in oids)


def copy_out_sql(entry: Entry) -> str:
    """The COPY ... TO STDOUT that produces a TABLE DATA entry's file, from the COPY ...
    FROM stdin statement pg_dump recorded for it (same table, same column list)."""
    stmt = (entry.copy_stmt or "").strip()
    suffix = " FROM stdin;"
    if not stmt.startswith("COPY ") or not stmt.endswith(suffix):
        raise TocFormatError(f"unexpected COPY statement for entry {entry.dump_id}")
    return stmt[: -len(suffix)] + " TO STDOUT"


def without(toc: Toc, drop: set[int]) -> Toc:
    return replace(toc, entries=[e for e in toc.entries if e.dump_id not in drop])


_BLOB_HEAD = struct.Struct("<IQ")
