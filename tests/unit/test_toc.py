"""pg_dump's TOC: written as a directory-format toc.dat and read back, ids permuted, selection."""

from __future__ import annotations

import pytest

from pgvault.engine import parload
from pgvault.engine import toc as tocmod


def _entry(
    dump_id: int, desc: str, ns: str | None, tag: str, deps: list[int], **kw: object
) -> tocmod.Entry:
    return tocmod.Entry(
        dump_id=dump_id,
        had_dumper=int(bool(kw.get("dumper", desc in ("TABLE DATA", "BLOBS")))),
        table_oid="1259",
        oid=str(16000 + dump_id),
        tag=tag,
        desc=desc,
        section=int(kw.get("section", 2)),  # type: ignore[call-overload]
        defn=f"-- {desc} {tag}\n",
        drop_stmt="",
        copy_stmt=str(kw["copy"]) if "copy" in kw else None,
        namespace=ns,
        tablespace="",
        tableam="heap" if desc == "TABLE" else "",
        owner="alice",
        with_oids="false",
        deps=deps,
    )


def _toc() -> tocmod.Toc:
    header = tocmod._Writer(4)
    header.int(0)  # compression
    for value in (1, 2, 3, 4, 5, 126, 0):
        header.int(value)
    for text in ("db", "15.4", "15.4"):
        header.str(text)
    entries = [
        _entry(1, "SCHEMA", None, "app", []),
        _entry(2, "TABLE", "app", "small", [1]),
        _entry(3, "TABLE", "app", "big", [1]),
        _entry(4, "SEQUENCE", "app", "big_id_seq", [1, 3]),
        _entry(
            5, "TABLE DATA", "app", "small", [2], section=3, copy="COPY app.small (a) FROM stdin;\n"
        ),
        _entry(
            6,
            "TABLE DATA",
            "app",
            "big",
            [3],
            section=3,
            copy='COPY app.big (id, "b c") FROM stdin;\n',
        ),
        _entry(7, "SEQUENCE SET", "app", "big_id_seq", [4], section=3),
        _entry(8, "CONSTRAINT", "app", "big big_pkey", [3], section=4),
        _entry(9, "FK CONSTRAINT", "app", "small small_fk", [2, 8], section=4),
        _entry(10, "INDEX", "app", "small_a", [2], section=4),
    ]
    return tocmod.Toc((1, 14, 0), 4, 8, tocmod.ARCH_CUSTOM, bytes(header.out), entries)


def test_directory_toc_reads_back() -> None:
    toc = _toc()
    data = tocmod.directory_toc(toc)
    assert data[:5] == b"PGDMP"
    assert data[10] == tocmod.ARCH_DIRECTORY
    back = tocmod.parse(data)
    assert [(e.dump_id, e.desc, e.tag, e.deps, e.copy_stmt) for e in back.entries] == [
        (e.dump_id, e.desc, e.tag, e.deps, e.copy_stmt) for e in toc.entries
    ]
    assert [e.data_file for e in back.entries if e.data_file] == ["5.dat", "6.dat"]
    assert tocmod.directory_toc(back) == data


def test_truncated_toc_is_refused() -> None:
    data = tocmod.directory_toc(_toc())
    with pytest.raises(tocmod.TocFormatError):
        tocmod.parse(data[:-3])
    with pytest.raises(tocmod.TocFormatError):
        tocmod.parse(b"PGDMP" + bytes([1, 12, 0]) + data[8:])


def test_copy_out_statement() -> None:
    big = _toc().entries[5]
    assert tocmod.copy_out_sql(big) == 'COPY app.big (id, "b c") TO STDOUT'


def test_largest_data_gets_the_smallest_id() -> None:
    ordered, old_id = tocmod.largest_first(_toc(), {5: 10, 6: 10_000})
    data = {e.tag: e.dump_id for e in ordered.entries if e.desc == "TABLE DATA"}
    assert data == {"big": 5, "small": 6}
    assert old_id == {5: 6, 6: 5}
    assert [e.dump_id for e in ordered.entries] == [1, 2, 3, 4, 6, 5, 7, 8, 9, 10]


def test_selection_takes_what_a_table_needs_and_no_foreign_key() -> None:
    keep = parload.select(_toc(), ["app.big"], [])
    assert keep == {1, 3, 4, 6, 7, 8}
    keep = parload.select(_toc(), ["app.small"], [])
    assert keep == {1, 2, 5, 10}  # the FK needs big's key: left out
    assert parload.select(_toc(), [], ["app"]) == set(range(1, 11))
