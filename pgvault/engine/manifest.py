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
FORMAT_VERSION = "1.0"


@dataclass
class StoredObject:
    name: str
    size: int
    sha256: str
    content: str = "DbBackupDumpData"


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
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["objects"] = [StoredObject(**o) for o in data.get("objects", [])]
        return cls(**known)

    def object(self, name: str) -> StoredObject:
        for o in self.objects:
            if o.name == name:
                return o
        raise KeyError(name)
