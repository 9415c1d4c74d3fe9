"""Recovery: on-demand backups, recovery points, rehydration, and validating/triggering restores.

Jobs are queued here and run by the worker pool (`_notify` wakes it).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from pgvault import catalog, instances, jobs, recovery_points, vaults
from pgvault.engine import parload
from pgvault.engine.manifest import MANIFEST, Manifest
from pgvault.errors import Code, PgVaultError, UserError
from pgvault.jobkinds import backup, rehydrate, restore
from pgvault.services.base import ServiceBase
from pgvault.services.protection import InstanceView, instance_view
from pgvault.storage.backends import Location


class RecoveryService(ServiceBase):
    def rebuild_catalog(self) -> catalog.Report:
        """Recovery points from the manifests in the vault datastore and the archive tier
        (`pgvault.catalog`): both are listed and every manifest read with no transaction
        open, then one transaction adds the points the metadata lacks."""
        vault = _manifests(self.ctx.datastore)
        archive = _manifests(self.ctx.archive)
        found = []
        for location in sorted(set(vault) | set(archive)):
            manifest, in_vault = vault.get(location, ({}, False))
            archived, in_archive = archive.get(location, ({}, False))
            found.append(catalog.Found(location, manifest or archived, in_vault, in_archive))
        with self.ctx.db.session() as s:
            return catalog.rebuild(s, found)

    """Backups on demand, recovery points, rehydration and restores of one instance."""

    def _view(self, s: Session, inst: instances.Instance) -> InstanceView:
        """The instance with its vault, server and policy (see `protection.instance_view`)."""
        return instance_view(s, inst)

    def adhoc_backup(
        self, sub: str, rg: str, vault_name: str, name: str, rule: str | None, tag: str | None
    ) -> jobs.Job:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            inst = instances.get(s, vault.id, name)
            job = backup.queue(s, vault, inst, self.ctx.clock.now(), rule, tag)
        self._notify()
        return job

    def list_points(
        self,
        sub: str,
        rg: str,
        vault_name: str,
        name: str,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
    ) -> tuple[InstanceView, list[recovery_points.RecoveryPoint]]:
        with self.ctx.db.read() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            inst = instances.get(s, vault.id, name)
            points = recovery_points.list_points(s, inst.id, start, end, limit=limit, offset=offset)
            return self._view(s, inst), points

    def count_points(self, sub: str, rg: str, vault_name: str, name: str) -> int:
        """How many recovery points an instance lists (the portal shows the newest page)."""
        with self.ctx.db.read() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            return recovery_points.count(s, instances.get(s, vault.id, name).id)

    def get_point(
        self, sub: str, rg: str, vault_name: str, name: str, point_id: str
    ) -> tuple[InstanceView, recovery_points.RecoveryPoint]:
        with self.ctx.db.read() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            inst = instances.get(s, vault.id, name)
            return self._view(s, inst), recovery_points.get(s, inst.id, point_id)

    def point_contents(
        self, sub: str, rg: str, vault_name: str, name: str, point_id: str
    ) -> dict[str, Any]:
        """pgvault extension: the schemas and tables a point holds, read from its stored
        TOC (the small schema object), for table-level restores."""
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            inst = instances.get(s, vault.id, name)
            point = recovery_points.get(s, inst.id, point_id)
            manifest = Manifest.from_dict(point.manifest)
            in_vault = point.in_vault or point.rehydrated_until is not None
            location = (
                self.ctx.datastore.child(point.location)
                if in_vault
                else self.ctx.archive.child(point.archive_location or "")
            )
        if not manifest.parallel:
            raise UserError(
                f"Recovery point {point_id!r} was taken in the single-stream format, which "
                "keeps no table of contents of its own.",
                code=Code.UserErrorPartialRestoreNotSupported,
                recommended_action="Restore it whole, or list the contents of a newer point.",
            )
        return {"recoveryPointId": point_id, **parload.contents(location, manifest)}

    def rehydrate(
        self,
        sub: str,
        rg: str,
        vault_name: str,
        name: str,
        point_id: str,
        priority: str | None,
        duration: str | None,
    ) -> jobs.Job:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            inst = instances.get(s, vault.id, name)
            job = rehydrate.queue(self.ctx, s, vault.id, inst.id, point_id, priority, duration)
        self._notify()
        return job

    def validate_restore(
        self, sub: str, rg: str, vault_name: str, name: str, req: restore.RestoreRequest
    ) -> None:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            inst = instances.get(s, vault.id, name)
            plan = restore.resolve(self.ctx, s, vault, inst, req)
        restore.check(plan)

    def trigger_restore(
        self, sub: str, rg: str, vault_name: str, name: str, req: restore.RestoreRequest
    ) -> jobs.Job:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            inst = instances.get(s, vault.id, name)
            plan = restore.resolve(self.ctx, s, vault, inst, req)
        job = restore.queue(self.ctx, plan)
        self._notify()
        return job


def _manifests(store: Location) -> dict[str, tuple[dict[str, Any], bool]]:
    """Each point location in `store`: its manifest, and whether every object it lists is
    there ({} and False for an unreadable manifest)."""
    keys = set(store.list())
    suffix = "/" + MANIFEST
    found: dict[str, tuple[dict[str, Any], bool]] = {}
    for key in sorted(k for k in keys if k.endswith(suffix)):
        location = key[: -len(suffix)]
        try:
            manifest = json.loads(store.child(location).get_bytes(MANIFEST))
        except (ValueError, PgVaultError):
            found[location] = ({}, False)
            continue
        objects = manifest.get("objects") or []
        complete = bool(objects) and all(
            isinstance(o, dict) and f"{location}/{o.get('name')}" in keys for o in objects
        )
        found[location] = (manifest, complete)
    return found
