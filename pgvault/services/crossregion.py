"""Cross-region restore: the secondary region's views of a vault's instances, recovery
points and jobs, restores from the secondary's replicas, and job cancel.

Every method reads the metadata database only, except `secondary_instances`, which
probes whether the primary datastore still answers (so a lost primary shows as
Unavailable rather than failing the listing). A restore in the secondary region reads
the replica in the secondary's datastore and nothing in the primary region.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from pgvault import arm, instances, jobs, recovery_points, regions, replicas, vaults
from pgvault.engine.manifest import MANIFEST
from pgvault.errors import BadRequest, Code, NotFound, PgVaultError
from pgvault.jobkinds import kind_for, restore
from pgvault.recovery_points import RecoveryPoint
from pgvault.services.base import ServiceBase
from pgvault.services.monitoring import JobView, MonitoringService
from pgvault.services.protection import InstanceView, instance_view

AVAILABLE = "Available"
UNAVAILABLE = "Unavailable"


@dataclass(frozen=True)
class SecondaryPoint:
    """A recovery point as the secondary region holds it (its replica)."""

    point: RecoveryPoint
    replica: replicas.Replica


@dataclass(frozen=True)
class SecondaryInstance:
    """A backup instance seen from the secondary region: its replication lag, its latest
    point there, and whether the primary datastore still answers."""

    view: InstanceView
    region: str
    lag: replicas.Lag
    latest: SecondaryPoint | None
    primary_status: str


class CrossRegionService(MonitoringService, ServiceBase):
    """The `locations/{region}/...` operations and `job cancel`."""

    def _source(
        self, s: Session, sub: str, region: str, source_region: str, instance_id: str
    ) -> tuple[vaults.Vault, instances.Instance, str]:
        """The source vault and instance of a secondary-region call, and the region checked
        to be the vault's secondary (paired, Cross Region Restore on)."""
        rid = arm.parse(instance_id)
        vault_name, name = rid.name_of("backupVaults"), rid.name_of("backupInstances")
        if rid.resource_group is None or vault_name is None or name is None:
            raise BadRequest(
                f"{instance_id!r} is not a backup instance id.", code=Code.InvalidResourceId
            )
        vault = self._source_vault(
            s, sub, source_region, arm.vault_id(rid.subscription, rid.resource_group, vault_name)
        )
        return vault, instances.get(s, vault.id, name), restore.check_secondary(vault, region)

    def _source_vault(
        self, s: Session, sub: str, source_region: str, vault_id: str
    ) -> vaults.Vault:
        """The vault named by a secondary-region call (in the path's subscription: that is
        where the caller's role was checked), in `source_region`."""
        rid = arm.parse(vault_id)
        vault_name = rid.name_of("backupVaults")
        if rid.resource_group is None or vault_name is None:
            raise BadRequest(f"{vault_id!r} is not a backup vault id.", code=Code.InvalidResourceId)
        if rid.subscription.lower() != sub.lower():
            raise BadRequest(
                f"{vault_id!r} is in another subscription than the request's ({sub}).",
                code=Code.InvalidResourceId,
            )
        vault = vaults.get(s, rid.subscription, rid.resource_group, vault_name)
        if regions.normalize(source_region) != vault.location:
            raise BadRequest(
                f"Vault {vault.name!r} is in {vault.location}, not {source_region}.",
                code=Code.UserErrorCrossRegionRestoreRegionNotPaired,
                target="sourceRegion",
            )
        return vault

    def secondary_points(
        self, sub: str, region: str, source_region: str, instance_id: str
    ) -> tuple[InstanceView, list[SecondaryPoint]]:
        """fetchSecondaryRecoveryPoints: the instance's points available in `region`."""
        with self.ctx.db.session() as s:
            _vault, inst, name = self._source(s, sub, region, source_region, instance_id)
            rows = replicas.of_instance(s, inst.id, name)
            points = {p.id: p for p in recovery_points.list_points(s, inst.id)}
            found = [SecondaryPoint(points[r.point_id], r) for r in rows if r.point_id in points]
            return instance_view(s, inst), found

    def validate_cross_region_restore(
        self,
        sub: str,
        region: str,
        source_region: str,
        instance_id: str,
        req: restore.RestoreRequest,
    ) -> None:
        """validateCrossRegionRestore: every check of a restore to the secondary region."""
        with self.ctx.db.session() as s:
            vault, inst, _ = self._source(s, sub, region, source_region, instance_id)
            plan = restore.resolve(self.ctx, s, vault, inst, req)
        restore.check(plan)

    def cross_region_restore(
        self,
        sub: str,
        region: str,
        source_region: str,
        instance_id: str,
        req: restore.RestoreRequest,
    ) -> jobs.Job:
        """crossRegionRestore: queue a restore that reads the replica in `region`."""
        with self.ctx.db.session() as s:
            vault, inst, _ = self._source(s, sub, region, source_region, instance_id)
            plan = restore.resolve(self.ctx, s, vault, inst, req)
        job = restore.queue(self.ctx, plan)
        self._notify()
        return job

    def _crr_jobs(self, s: Session, vault: vaults.Vault, region: str) -> list[jobs.Job]:
        rows = jobs.list_jobs(s, [vault.id], limit=1000)
        return [j for j in rows if (j.params or {}).get("secondaryRegion") == region]

    def cross_region_jobs(
        self, sub: str, region: str, source_region: str, vault_id: str
    ) -> list[JobView]:
        """fetchCrossRegionRestoreJobs: the vault's restores in its secondary region."""
        with self.ctx.db.session() as s:
            vault = self._source_vault(s, sub, source_region, vault_id)
            name = restore.check_secondary(vault, region)
            return [self._job_view(s, j) for j in self._crr_jobs(s, vault, name)]

    def cross_region_job(
        self, sub: str, region: str, source_region: str, vault_id: str, job_id: str
    ) -> JobView:
        """fetchCrossRegionRestoreJob: one of them."""
        with self.ctx.db.session() as s:
            vault = self._source_vault(s, sub, source_region, vault_id)
            name = restore.check_secondary(vault, region)
            job = jobs.get(s, job_id, vault.id)
            if (job.params or {}).get("secondaryRegion") != name:
                raise jobs_not_found(job_id)
            return self._job_view(s, job)

    def secondary_instances(self, sub: str, region: str) -> list[SecondaryInstance]:
        """Backup instances whose vault's secondary region is `region` ("Instance Region ==
        Secondary Region"), with their replication lag and the primary's availability.

        A handful of queries per vault, whatever its size (instances, their replicas, their
        points' ids and times, the latest replicated points): the Backup center's Secondary
        Region filter lists a thousand instances."""
        name = regions.normalize(region)
        now = self.ctx.clock.now()
        found: list[tuple[InstanceView, replicas.Lag, SecondaryPoint | None, str | None]] = []
        with self.ctx.db.session() as s:
            for vault in vaults.list_vaults(s, sub, None):
                if (
                    not vaults.crr_enabled(vault.properties)
                    or regions.paired(vault.location) != name
                ):
                    continue
                found += self._vault_secondary(s, vault, name, now)
        return [
            SecondaryInstance(view, name, lag, latest, self._primary_status(probe))
            for view, lag, latest, probe in found
        ]

    def _vault_secondary(
        self, s: Session, vault: vaults.Vault, region: str, now: datetime
    ) -> list[tuple[InstanceView, replicas.Lag, SecondaryPoint | None, str | None]]:
        """One vault's instances as `secondary_instances` reports them (batched reads)."""
        insts = list(
            s.scalars(select(instances.Instance).where(instances.Instance.vault_id == vault.id))
        )
        if not insts:
            return []
        rows: dict[str, list[replicas.Replica]] = defaultdict(list)
        for r in s.scalars(
            select(replicas.Replica)
            .where(replicas.Replica.vault_id == vault.id, replicas.Replica.region == region)
            .order_by(replicas.Replica.point_created_at.desc())
        ):
            rows[r.instance_id].append(r)
        rp = recovery_points.RecoveryPoint
        points: dict[str, list[tuple[str, datetime, str, bool]]] = defaultdict(list)
        for pid, iid, created, location, in_vault in s.execute(
            select(rp.id, rp.instance_id, rp.created_at, rp.location, rp.in_vault)
            .where(rp.vault_id == vault.id, rp.state == recovery_points.COMMITTED)
            .order_by(rp.created_at.desc(), rp.id)
        ):
            points[iid].append((pid, created, location, in_vault))
        latest_ids: dict[str, replicas.Replica] = {}
        for inst in insts:
            ids = {p[0] for p in points[inst.id]}
            first = next((r for r in rows[inst.id] if r.point_id in ids), None)
            if first is not None:
                latest_ids[first.point_id] = first
        full = {
            p.id: p for p in s.scalars(select(rp).where(rp.id.in_(list(latest_ids))))
        } if latest_ids else {}  # fmt: skip
        out = []
        for inst, related in zip(insts, instances.related_many(s, insts), strict=True):
            mine, done = points[inst.id], {r.point_id for r in rows[inst.id]}
            pending = [created for pid, created, _, _ in mine if pid not in done]
            latest = next(
                (SecondaryPoint(full[pid], latest_ids[pid]) for pid, *_ in mine
                 if pid in latest_ids and latest_ids[pid].instance_id == inst.id),
                None,
            )  # fmt: skip
            probe = mine[0][2] if mine and mine[0][3] else None
            view = InstanceView(inst, *related)
            out.append((view, replicas.lag(rows[inst.id], pending, now), latest, probe))
        return out

    def _primary_status(self, location: str | None) -> str:
        """Whether the primary datastore still holds the instance's latest point (probed
        outside any transaction; any failure reads as Unavailable)."""
        if location is None:
            return AVAILABLE
        try:
            return AVAILABLE if self.ctx.datastore.child(location).exists(MANIFEST) else UNAVAILABLE
        except Exception:
            return UNAVAILABLE

    def replication_lag(self, sub: str, rg: str, vault_name: str, name: str) -> replicas.Lag:
        """One instance's replication lag (zero pending and no replicas without CRR)."""
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            inst = instances.get(s, vault.id, name)
            if not vaults.crr_enabled(vault.properties):
                return replicas.lag([], [], self.ctx.clock.now())
            region = regions.paired(vault.location)
            rows = replicas.of_instance(s, inst.id, region)
            done = {r.point_id for r in rows}
            pending = [
                p.created_at for p in recovery_points.list_points(s, inst.id) if p.id not in done
            ]
            return replicas.lag(rows, pending, self.ctx.clock.now())

    def cancel_job(self, sub: str, rg: str, vault_name: str, job_id: str) -> JobView:
        """Cancel a job: a queued one ends Cancelled at once (what it reserved is released);
        a running one stops cleanly at its next progress report; a restore already
        transferring data is refused (JobCannotBeCancelled)."""
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            job = jobs.get(s, job_id, vault.id)
            kind = kind_for(job.operation)
            status = jobs.request_cancel(s, job, self.ctx.clock.now(), kind.uncancellable_phases)
            snapshot = jobs.get(s, job.id)
        if status == jobs.CANCELLED:
            with contextlib.suppress(PgVaultError):
                kind.abandoned(self.ctx, snapshot)
        return self.get_job(sub, rg, vault_name, job_id)


def jobs_not_found(job_id: str) -> PgVaultError:
    return NotFound(
        f"Job {job_id!r} is not a cross-region restore job of this vault in this region.",
        code=Code.ResourceNotFound,
    )
