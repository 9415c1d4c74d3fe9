"""Restore as files never overwrites: exclusive names, and cleanup of only what it wrote."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from obstore.store import MemoryStore

from pgvault.engine import load
from pgvault.errors import Code, PgVaultError, UserError
from pgvault.storage.backends import Location, put_new


class _Manifest:
    def to_json(self) -> bytes:
        return b'{"dbName": "shop"}'


def _target() -> Location:
    return Location(MemoryStore(), "", "memory")


def _source(fail: bool) -> Iterator[bytes]:
    yield b"dump-bytes"
    if fail:
        raise PgVaultError("the source broke", code=Code.InternalError)


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    state = {"fail": False}
    monkeypatch.setattr(load, "decompressed", lambda *_: _source(state["fail"]))
    return state


def _restore(target: Location, created: list[list[str]] | None = None) -> list[str]:
    manifest: Any = _Manifest()
    return load.into_files(
        target,
        manifest,
        target,
        "p/q",
        lambda _: None,
        on_created=None if created is None else created.append,
    )


def test_put_new_is_exclusive() -> None:
    target = _target()
    assert put_new(target, "a", b"1")
    assert not put_new(target, "a", b"2")
    assert target.get_bytes("a") == b"1"


def test_files_are_written_once_then_refused(stream: dict[str, bool]) -> None:
    target, created = _target(), list[list[str]]()
    assert _restore(target, created) == ["p/q.dump", "p/q.manifest.json"]
    assert created[-1] == ["p/q.dump", "p/q.manifest.json"]
    assert target.get_bytes("p/q.dump") == b"dump-bytes"
    with pytest.raises(UserError) as refused:
        _restore(target)
    assert refused.value.code == Code.UserErrorFileAlreadyExists
    assert target.get_bytes("p/q.dump") == b"dump-bytes"  # the first restore's files stay


@pytest.mark.parametrize("taken", ["p/q.dump", "p/q.manifest.json"])
def test_a_taken_name_refuses_and_deletes_nothing_of_anothers(
    stream: dict[str, bool], taken: str
) -> None:
    target = _target()
    target.put_bytes(taken, b"someone else's")
    with pytest.raises(UserError) as refused:
        _restore(target)
    assert refused.value.code == Code.UserErrorFileAlreadyExists
    assert target.list() == [taken]
    assert target.get_bytes(taken) == b"someone else's"


def test_a_failed_restore_removes_only_what_it_wrote(stream: dict[str, bool]) -> None:
    target = _target()
    target.put_bytes("p/other.dump", b"keep")
    stream["fail"] = True
    with pytest.raises(PgVaultError):
        _restore(target)
    assert target.list() == ["p/other.dump"]
