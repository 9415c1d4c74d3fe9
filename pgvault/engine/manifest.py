"""The manifest written last beside every recovery point: the point describes itself.

Anyone holding only the datastore can tell what a point is, which tool and
arguments made it, and check every object against its checksum.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

MANIFEST = "manifest.json"
DUMP = "dump.pgc.zst"
#: Format 1: one custom-format dump stream (DUMP). Format 2: pg_dump's table of contents
#: (SCHEMA) plus one object per table's data and one for all large objects, one snapshot.
FORMAT_VERSION = "1.0"
FORMAT_PARALLEL = "2.0"
SCHEMA = "schema.toc.zst"
BLOBS = "data/blobs.zst"

#: `StoredObject.content` of the format-2 objects.
CONTENT_TOC = "SchemaToc"
CONTENT_TABLE = "TableData"
CONTENT_BLOBS = "LargeObjects"


def table_object(dump_id: int) -> str:
    return f"data/{dump_id}.dat.zst"


@dataclass
class StoredObject:
    name: str
    size: int
    sha256: str
    content: str = "DbBackupDumpData"
    #: Format 2: the TOC entry this object holds the data of, and its uncompressed size.
    dumpId: int | None = None
    rawSize: int | None = None
    #: Format 2 table data: the table's row estimate at backup time (pg_class.reltuples).
    rowEstimate: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Manifest:
    """What a recovery point holds (field names follow Azure's PostgresBackupMetadata)."""

    recoveryPointId: str
    dbName: str
    serverName: str
    serverFQDN: str
    usernameUsed: str
    postgresVersion: str
    serverVersionNum: int
    backupToolPath: str
    backupToolVersion: str
    backupToolArgs: list[str]
    createdTime: str
    dataSourceSize: int
    bytesTransferred: int
    storedBytes: int
    objects: list[StoredObject] = field(default_factory=list)
    compression: dict[str, Any] = field(
        default_factory=lambda: {"algorithm": "zstd", "level": 1, "contentChecksum": True}
    )
    tier: str = "VaultStore"
    objectType: str = "PostgresBackupMetadata"
    version: str = FORMAT_VERSION
    backupType: str = "Full"
    backupDumpFormat: str = "CUSTOM"
    #: What the caller says the point belongs to (pgvault: vault, instance, server, policy,
    #: retention tag), so the datastore alone can rebuild the catalog. Opaque to the engine;
    #: absent ({}) in manifests written before it existed.
    catalog: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True).encode()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["objects"] = [o.to_dict() for o in self.objects]
        return data

    @property
    def parallel(self) -> bool:
        """Format 2 (schema TOC + one object per table), else the single dump stream."""
        return self.version == FORMAT_PARALLEL

    def object_keys(self) -> list[str]:
        """Every object name of the point, the manifest last: what a complete copy of the
        point holds (replication, tiering and deletion read it from here only)."""
        return [o.name for o in self.objects] + [MANIFEST]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields = StoredObject.__dataclass_fields__
        known["objects"] = [
            StoredObject(**{k: v for k, v in o.items() if k in fields})
            for o in data.get("objects", [])
        ]
        return cls(**known)

    def object(self, name: str) -> StoredObject:
        for o in self.objects:
            if o.name == name:
                return o
        raise KeyError(name)
