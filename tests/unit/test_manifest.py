"""The recovery point's manifest: a JSON document that describes the point."""

from __future__ import annotations

import json

import pytest

from pgvault.engine.manifest import Manifest, StoredObject


def _manifest() -> Manifest:
    return Manifest(
        recoveryPointId="rp-1",
        dbName="sales",
        serverName="pg1",
        serverFQDN="db.example:5432",
        usernameUsed="backup",
        postgresVersion="16.4",
        serverVersionNum=160004,
        backupToolPath="/usr/lib/postgresql/16/bin/pg_dump",
        backupToolVersion="pg_dump (PostgreSQL) 16.4",
        backupToolArgs=["--format=custom", "--compress=0"],
        createdTime="2026-11-25T08:00:00.000000Z",
        dataSourceSize=123456,
        bytesTransferred=100000,
        storedBytes=4242,
        objects=[
            StoredObject("dump.pgc.zst", 4242, "ab" * 32),
            StoredObject("toc.dat", 10, "cd" * 32, content="Toc"),
        ],
    )


def test_json_round_trip() -> None:
    m = _manifest()
    data = json.loads(m.to_json())
    assert Manifest.from_dict(data) == m
    assert data["objects"][0] == {
        "name": "dump.pgc.zst",
        "size": 4242,
        "sha256": "ab" * 32,
        "content": "DbBackupDumpData",
    }
    assert data["objectType"] == "PostgresBackupMetadata"
    assert data["version"] == "1.0"


def test_to_json_is_stable() -> None:
    assert _manifest().to_json() == _manifest().to_json()
    assert json.loads(_manifest().to_json()) == _manifest().to_dict()


def test_from_dict_ignores_unknown_fields() -> None:
    data = _manifest().to_dict()
    data["addedInAFutureVersion"] = {"x": 1}
    assert Manifest.from_dict(data) == _manifest()


def test_from_dict_without_objects() -> None:
    data = _manifest().to_dict()
    del data["objects"]
    assert Manifest.from_dict(data).objects == []


def test_object_lookup() -> None:
    m = _manifest()
    assert m.object("toc.dat").size == 10
    with pytest.raises(KeyError):
        m.object("missing")


def test_format_2_objects_and_keys() -> None:
    m = _manifest()
    m.version = "2.0"
    m.objects = [
        StoredObject("schema.toc.zst", 10, "aa" * 32, "SchemaToc", rawSize=30),
        StoredObject("data/7.dat.zst", 20, "bb" * 32, "TableData", 7, 90, rowEstimate=3),
    ]
    data = json.loads(m.to_json())
    assert data["objects"][1] == {
        "name": "data/7.dat.zst",
        "size": 20,
        "sha256": "bb" * 32,
        "content": "TableData",
        "dumpId": 7,
        "rawSize": 90,
        "rowEstimate": 3,
    }
    back = Manifest.from_dict(data)
    assert back == m
    assert back.parallel
    assert not _manifest().parallel
    assert back.object_keys() == ["schema.toc.zst", "data/7.dat.zst", "manifest.json"]
