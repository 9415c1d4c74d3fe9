"""Catalog recovery: recovery points rebuilt from the manifests in the datastore alone.

Losing the metadata database must not lose backups. Every point's manifest (written last,
beside its dump) says what it is; since catalog recovery exists it also names its vault,
instance, server, policy and retention tag (`catalog` in the manifest). After the metadata is
lost, the operator re-creates the resources a manifest cannot hold (servers, key-vault secrets
with their connection strings, vaults, policies, instances: the same names as before, since
credentials were only ever in the metadata), then `pgvault catalog rebuild` matches each
manifest to a live instance and inserts the points that are missing:

1. a manifest with `catalog`: the instance named `instanceName` in the vault named
   `vaultName`;
2. an older manifest without it: the one live instance protecting database `dbName` on a
   server named `serverName` (several or none: left unmatched and reported).

Both tiers are read (a point moved to the archive keeps its location there). A point keeps its
id, its objects' location and its creation time; its retention is planned
again by the instance's policy (so a point the policy would already have expired is deleted
by the next sweep, as it would have been). Rebuilding twice adds nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pgvault import instances, policies, recovery_points, servers, vaults
from pgvault.recovery_points import RecoveryPoint


@dataclass(frozen=True)
class Found:
    """A manifest found in the vault datastore and/or the archive tier (same location in
    both): where the point's objects are, the manifest, and where every object is present."""

    location: str
    manifest: dict[str, Any]
    complete: bool  # every object it lists is present in the vault datastore
    in_archive: bool = False  # ... and in the archive tier

    @property
    def restorable(self) -> bool:
        return self.complete or self.in_archive


@dataclass
class Report:
    found: int = 0
    added: list[str] = field(default_factory=list)
    present: int = 0
    incomplete: list[str] = field(default_factory=list)
    unmatched: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "manifestsFound": self.found,
            "pointsAdded": len(self.added),
            "pointsAlreadyPresent": self.present,
            "incomplete": self.incomplete,
            "unmatched": self.unmatched,
        }


def _created(manifest: dict[str, Any]) -> datetime:
    when = datetime.fromisoformat(str(manifest["createdTime"]))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _match(s: Session, manifest: dict[str, Any]) -> instances.Instance | None:
    labels = manifest.get("catalog") or {}
    if labels.get("vaultName") and labels.get("instanceName"):
        for vault in s.scalars(
            select(vaults.Vault).where(vaults.Vault.name == labels["vaultName"])
        ):
            inst = instances.find(s, vault.id, str(labels["instanceName"]))
            if inst is not None:
                return inst
        return None
    candidates = [
        inst
        for inst in s.scalars(
            select(instances.Instance).where(
                instances.Instance.database == manifest.get("dbName"),
                instances.Instance.protection_state != instances.SOFT_DELETED,
            )
        )
        if (srv := s.get(servers.Server, inst.server_id)) is not None
        and srv.name == manifest.get("serverName")
    ]
    return candidates[0] if len(candidates) == 1 else None


def rebuild(s: Session, found: list[Found]) -> Report:
    """Insert the points of `found` that the metadata lacks (see the module docstring)."""
    report = Report(found=len(found))
    for item in sorted(found, key=lambda f: str(f.manifest.get("createdTime"))):
        m = item.manifest
        point_id = str(m.get("recoveryPointId", "")).lower()
        if not point_id or "createdTime" not in m:
            report.incomplete.append(item.location)
            continue
        if s.get(RecoveryPoint, point_id) is not None:
            report.present += 1
            continue
        if not item.restorable:
            report.incomplete.append(item.location)
            continue
        inst = _match(s, m)
        if inst is None:
            report.unmatched.append(
                {
                    "location": item.location,
                    "server": str(m.get("serverName")),
                    "database": str(m.get("dbName")),
                    "instance": str((m.get("catalog") or {}).get("instanceName", "")),
                    "vault": str((m.get("catalog") or {}).get("vaultName", "")),
                }
            )
            continue
        policy = s.get_one(policies.Policy, inst.policy_id)
        point = recovery_points.add(
            s,
            RecoveryPoint(
                id=point_id,
                instance_id=inst.id,
                vault_id=inst.vault_id,
                created_at=_created(m),
                location=item.location,
                stored_bytes=int(m.get("storedBytes", 0)),
                dump_bytes=int(m.get("bytesTransferred", 0)),
                retention_tag=str((m.get("catalog") or {}).get("retentionTag") or "Default"),
                policy_name=policy.name,
                policy_version=policy.version,
                expires_at=None,
                manifest=m,
                in_vault=item.complete,
                in_archive=item.in_archive,
                archive_location=item.location if item.in_archive else None,
            ),
        )
        recovery_points.plan_point(point, policy.properties)
        report.added.append(point_id)
    return report
