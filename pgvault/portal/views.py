"""What the portal shows: lookups over the service layer, filtered by what the caller may read.

Route handlers stay thin; the few joins a page needs (every vault the caller can see, the
jobs of those vaults, an instance's region against its vault's) live here as small typed
functions over `Service` methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pgvault import jobs, recovery_points, regions, vaults
from pgvault.errors import PgVaultError
from pgvault.jobkinds import kind_for
from pgvault.portal.session import Session
from pgvault.services.crossregion import SecondaryInstance
from pgvault.services.monitoring import JobView
from pgvault.services.protection import InstanceView

PRIMARY, SECONDARY = "Primary", "Secondary"


def vault_url(v: vaults.Vault) -> str:
    return f"/vaults/{v.subscription_id}/{v.resource_group}/{v.name}"


def instance_url(view: InstanceView) -> str:
    return f"{vault_url(view.vault)}/instances/{view.instance.name}"


def instance_arm(view: InstanceView) -> str:
    return f"{view.vault.arm_id}/backupInstances/{view.instance.name}"


def job_url(view: JobView) -> str:
    return f"{vault_url(view.vault)}/jobs/{view.job.id}"


def instance_region(view: InstanceView | JobView) -> str:
    """Primary when the datasource is in the vault's region, else Secondary.

    (Cross-region restore will record a secondary-region copy explicitly; until then the
    instance's server region against its vault's region is what tells them apart.)
    """
    server = view.server
    if server is None:
        return PRIMARY
    return PRIMARY if server.location == view.vault.location else SECONDARY


def geo_redundant(v: vaults.Vault) -> bool:
    """Whether Cross Region Restore may be enabled on the vault (GeoRedundant storage)."""
    return vaults.redundancy(v.properties).lower() == "georedundant"


def paired_region(v: vaults.Vault) -> str:
    """The vault's secondary region, or "none" when its region has no pair."""
    try:
        return regions.paired(v.location)
    except (KeyError, PgVaultError):
        return "none"


def visible_vaults(session: Session) -> list[vaults.Vault]:
    """Every vault in every subscription that the caller may read."""
    found: list[vaults.Vault] = []
    for sub in session.svc.list_subscriptions():
        for v in session.svc.list_vaults(sub.id, None):
            if session.can("GET", v.arm_id):
                found.append(v)
    return found


def instances_of(session: Session, vs: list[vaults.Vault]) -> list[InstanceView]:
    """The live instances of the vaults among `vs` whose instances the caller may list."""
    ids = [v.id for v in vs if session.can("GET", f"{v.arm_id}/backupInstances")]
    return session.svc.list_instances_in(ids)


def job_vault_ids(session: Session, vs: list[vaults.Vault]) -> list[str]:
    """The vaults among `vs` whose jobs the caller may read."""
    return [v.id for v in vs if session.can("GET", f"{v.arm_id}/backupJobs")]


def find_jobs(
    session: Session, vs: list[vaults.Vault], f: JobFilter, now: datetime, limit: int
) -> list[JobView]:
    """The newest jobs matching `f`: operation, status and time in the query; instance and
    region (which need the job's instance) on what it returned."""
    since = now - timedelta(hours=f.hours) if f.hours else None
    found = session.svc.find_jobs(
        job_vault_ids(session, vs), limit=limit * (5 if f.instance or f.region else 1),
        operation=f.operation or None, status=f.status or None, since=since,
    )  # fmt: skip
    return [j for j in found if f.keep(j, now)][:limit]


@dataclass(frozen=True)
class JobFilter:
    """The Backup jobs filters (every field optional)."""

    operation: str = ""
    status: str = ""
    vault: str = ""
    instance: str = ""
    region: str = ""
    hours: int = 0

    def keep(self, view: JobView, now: datetime) -> bool:
        j = view.job
        return (
            (not self.operation or j.operation == self.operation)
            and (not self.status or j.status == self.status)
            and (not self.vault or view.vault.name == self.vault)
            and (
                not self.instance
                or (view.instance is not None and view.instance.name == self.instance)
            )
            and (not self.region or instance_region(view) == self.region)
            and (not self.hours or j.created_at >= now - timedelta(hours=self.hours))
        )


@dataclass(frozen=True)
class Progress:
    """What the live progress of a job shows."""

    phase: str
    bytes_done: int
    bytes_total: int | None
    percent: float | None
    eta_seconds: float | None
    elapsed: float
    running: bool
    no_cancel: bool


def progress(j: jobs.Job, now: datetime) -> Progress:
    """Phase, bytes, percent and a linear ETA from the bytes moved so far."""
    start = j.started_at or j.created_at
    end = j.ended_at or now
    elapsed = max((end - start).total_seconds(), 0.0)
    running = j.status not in jobs.TERMINAL
    percent = round(100.0 * j.bytes_done / j.bytes_total, 1) if j.bytes_total else None
    eta = None
    if running and j.bytes_total and j.bytes_done > 0 and elapsed > 0:
        eta = elapsed * (j.bytes_total - j.bytes_done) / j.bytes_done
    no_cancel = running and j.phase in _uncancellable(j.operation)
    return Progress(j.phase, j.bytes_done, j.bytes_total, percent, eta, elapsed, running, no_cancel)


def _uncancellable(operation: str) -> tuple[str, ...]:
    """The phases in which a job of `operation` can no longer be cancelled (the same list
    `Service.cancel_job` refuses on: a restore once it creates the database or moves data)."""
    try:
        return kind_for(operation).uncancellable_phases
    except KeyError:
        return ()


def job_seconds(j: jobs.Job) -> float | None:
    if j.started_at is None or j.ended_at is None:
        return None
    return (j.ended_at - j.started_at).total_seconds()


def tier(point: recovery_points.RecoveryPoint) -> str:
    """The tier a restore reads: Vault-standard, or Archive (needs rehydration first)."""
    if point.in_vault:
        return "Vault-standard"
    return "Archive"


# -- the secondary region (cross-region restore) -------------------------------------------


def loc(sub: str, rg: str, region: str) -> str:
    """The ARM path of a secondary-region call (`.../locations/{region}`)."""
    return (
        f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DataProtection"
        f"/locations/{region}"
    )


def secondary_url(item: SecondaryInstance) -> str:
    return secondary_instance_url(item.view) or "/"


def secondary_instance_url(view: InstanceView) -> str | None:
    """The instance's page in its secondary region, when its vault has Cross Region Restore."""
    v = view.vault
    region = paired_region(v)
    if not vaults.crr_enabled(v.properties) or region == "none":
        return None
    return (
        f"/secondary/{region}/{v.subscription_id}/{v.resource_group}/{v.name}"
        f"/instances/{view.instance.name}"
    )


def crr_vaults(vs: list[vaults.Vault]) -> list[vaults.Vault]:
    """The vaults among `vs` with Cross Region Restore on (and a paired region)."""
    return [v for v in vs if vaults.crr_enabled(v.properties) and paired_region(v) != "none"]


def secondary_instances(session: Session, vs: list[vaults.Vault]) -> list[SecondaryInstance]:
    """Instance Region == Secondary Region: the instances of the CRR vaults among `vs` as
    their secondary region holds them, where the caller may list that region's instances."""
    wanted = {v.id for v in crr_vaults(vs)}
    found: list[SecondaryInstance] = []
    pairs = sorted({(v.subscription_id, v.resource_group, paired_region(v))
                    for v in crr_vaults(vs)})  # fmt: skip
    seen: set[tuple[str, str]] = set()
    for sub, rg, region in pairs:
        if (sub, region) in seen:
            continue
        if not session.can("GET", loc(sub, rg, region) + "/secondaryBackupInstances"):
            continue
        seen.add((sub, region))
        found += [
            i for i in session.svc.secondary_instances(sub, region) if i.view.vault.id in wanted
        ]
    return found
