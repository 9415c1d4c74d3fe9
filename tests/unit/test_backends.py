"""Object-store locations on obstore's MemoryStore, and the pump thread between streams."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from pgvault.errors import BackupToolError, PgVaultError, StorageError
from pgvault.storage.backends import Location, from_url, pumped


@pytest.fixture
def loc() -> Location:
    return from_url("memory://").child("vaults/v1")


def _pump_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "pgvault-pump" and t.is_alive()]


def test_from_url_memory() -> None:
    root = from_url("memory://")
    assert root.prefix == ""
    assert root.list() == []


def test_from_url_unknown_scheme() -> None:
    with pytest.raises(PgVaultError) as info:
        from_url("ftp://example/x")
    assert info.value.code == "InvalidDatastoreUrl"


def test_key_and_child() -> None:
    root = from_url("memory://")
    assert root.key("a") == "a"
    child = root.child("vaults").child("v1")
    assert child.prefix == "vaults/v1"
    assert child.key("rp/manifest.json") == "vaults/v1/rp/manifest.json"
    assert child.store is root.store


def test_put_stream_get_stream_round_trip(loc: Location) -> None:
    chunks = [bytes([i]) * (1000 + i) for i in range(50)]
    loc.put_stream("rp1/dump.pgc.zst", iter(chunks))
    assert b"".join(loc.get_stream("rp1/dump.pgc.zst")) == b"".join(chunks)
    assert loc.get_bytes("rp1/dump.pgc.zst") == b"".join(chunks)


def test_put_stream_empty(loc: Location) -> None:
    loc.put_stream("empty", iter([]))
    assert loc.exists("empty")
    assert b"".join(loc.get_stream("empty")) == b""


def test_put_stream_accepts_any_iterable(loc: Location) -> None:
    loc.put_stream("list", [b"a", b"b"])
    assert loc.get_bytes("list") == b"ab"


def test_put_bytes_overwrites(loc: Location) -> None:
    loc.put_bytes("x", b"one")
    loc.put_bytes("x", b"two")
    assert loc.get_bytes("x") == b"two"


def test_list_is_relative_and_scoped(loc: Location) -> None:
    root = Location(loc.store)
    loc.put_bytes("rp1/a", b"1")
    loc.put_bytes("rp1/sub/b", b"2")
    loc.put_bytes("rp2/c", b"3")
    root.put_bytes("vaults/v10/other", b"sibling with a common string prefix")
    root.put_bytes("top", b"t")
    assert sorted(loc.list()) == ["rp1/a", "rp1/sub/b", "rp2/c"]
    assert sorted(loc.child("rp1").list()) == ["a", "sub/b"]
    assert sorted(root.list()) == [
        "top",
        "vaults/v1/rp1/a",
        "vaults/v1/rp1/sub/b",
        "vaults/v1/rp2/c",
        "vaults/v10/other",
    ]


def test_exists_and_delete(loc: Location) -> None:
    assert not loc.exists("x")
    loc.put_bytes("x", b"1")
    assert loc.exists("x")
    loc.delete("x")
    assert not loc.exists("x")
    loc.delete("x")  # missing is fine


def test_delete_all_is_scoped_and_idempotent(loc: Location) -> None:
    root = Location(loc.store)
    root.put_bytes("vaults/v2/keep", b"k")
    root.put_bytes("vaults/v10/keep", b"k")
    for i in range(5):
        loc.put_bytes(f"rp/{i}", b"x")
    loc.delete_all()
    assert loc.list() == []
    loc.delete_all()
    assert sorted(root.list()) == ["vaults/v10/keep", "vaults/v2/keep"]


def test_check_writable_leaves_nothing(loc: Location) -> None:
    loc.check_writable()
    assert loc.list() == []


@pytest.mark.parametrize(
    "read", [lambda at, n: at.get_bytes(n), lambda at, n: list(at.get_stream(n))]
)
def test_missing_object_is_storage_not_found(loc: Location, read) -> None:  # type: ignore[no-untyped-def]
    loc.description = "datastore"
    with pytest.raises(StorageError) as info:
        read(loc, "nope")
    assert info.value.code == "StorageObjectNotFound"
    assert "datastore:vaults/v1/nope" in info.value.message


def test_failing_source_leaves_no_object(loc: Location) -> None:
    def source() -> Iterator[bytes]:
        yield b"x" * 100_000
        yield b"y" * 100_000
        raise RuntimeError("pg_dump exited with status 1")

    with pytest.raises(PgVaultError) as info:
        loc.put_stream("rp1/dump.pgc.zst", source())
    assert "pg_dump exited" in info.value.message
    assert not loc.exists("rp1/dump.pgc.zst")
    assert loc.list() == []


def test_failing_source_with_pgvault_error_is_passed_through(loc: Location) -> None:
    """pg_dump's own error (with its code) reaches the job, not a generic StorageError."""

    def source() -> Iterator[bytes]:
        yield b"x"
        raise BackupToolError("pg_dump: error: connection lost")

    with pytest.raises(BackupToolError) as info:
        loc.put_stream("d", source())
    assert info.value.code == "UserErrorBackupToolFailed"
    assert not loc.exists("d")


def test_stream_from_one_location_into_another_through_pump(loc: Location) -> None:
    data = [bytes([i]) * 5000 for i in range(20)]
    loc.put_stream("src", iter(data))
    loc.put_stream("copy", pumped(lambda: loc.get_stream("src")))
    assert loc.get_bytes("copy") == b"".join(data)


# -- pumped ---------------------------------------------------------------------------------


def test_pumped_hands_over_all_chunks_in_order() -> None:
    chunks = [str(i).encode() for i in range(1000)]
    assert list(pumped(lambda: iter(chunks), depth=3)) == chunks
    assert _pump_threads() == []


def test_pumped_empty_source() -> None:
    assert list(pumped(lambda: iter([]))) == []


def test_pumped_runs_source_in_another_thread() -> None:
    seen: list[str] = []

    def source() -> Iterator[bytes]:
        seen.append(threading.current_thread().name)
        yield b"x"

    assert list(pumped(source)) == [b"x"]
    assert seen == ["pgvault-pump"]


def test_pumped_propagates_source_exception() -> None:
    def source() -> Iterator[bytes]:
        yield b"a"
        yield b"b"
        raise ValueError("source broke")

    gen = pumped(source)
    assert next(gen) == b"a"
    assert next(gen) == b"b"
    with pytest.raises(ValueError, match="source broke"):
        next(gen)
    assert _pump_threads() == []


def test_pumped_propagates_exception_from_calling_source() -> None:
    def source() -> Iterator[bytes]:
        raise OSError("cannot open")

    with pytest.raises(OSError, match="cannot open"):
        list(pumped(source))


def test_pumped_stops_thread_when_consumer_stops_early() -> None:
    produced = 0
    finished = threading.Event()

    def endless() -> Iterator[bytes]:
        nonlocal produced
        try:
            while True:
                produced += 1
                yield b"x" * 10
        finally:
            finished.set()

    gen = pumped(endless, depth=2)
    assert next(gen) == b"x" * 10
    assert next(gen) == b"x" * 10
    gen.close()
    assert _pump_threads() == []
    # Bounded: the producer never ran far ahead of the consumer.
    assert produced <= 2 + 2 + 2
    assert finished.wait(2), "the source generator was not closed"


def test_pumped_stops_thread_when_consumer_raises() -> None:
    def endless() -> Iterator[bytes]:
        while True:
            yield b"x"

    def consume() -> None:
        for _ in pumped(endless, depth=1):
            raise KeyError("consumer failed")

    with pytest.raises(KeyError):
        consume()
    assert _pump_threads() == []


def test_pumped_memory_is_bounded_by_depth() -> None:
    produced = 0

    def source() -> Iterator[bytes]:
        nonlocal produced
        for _ in range(100):
            produced += 1
            yield b"x"

    gen = pumped(source, depth=3)
    next(gen)
    time.sleep(0.2)
    # one handed over, `depth` queued, one held by the blocked producer
    assert produced <= 1 + 3 + 1
    assert len(list(gen)) == 99
