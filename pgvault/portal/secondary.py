"""Cross-region restore in the portal: the secondary region's instances, recovery points and
jobs, and the "Restore to secondary region" entry into the restore wizard.

Each page authorises like the `locations/{region}/...` call it mirrors (checked at the
subscription, as Azure checks them: Backup Reader sees, Backup Operator restores) and reads
only the metadata database and the secondary's replicas, so it still answers when the
primary region's datastore is gone (its status then reads Unavailable).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from pgvault.portal import views
from pgvault.portal.render import page
from pgvault.portal.routes import Current, vault_crumbs
from pgvault.portal.session import mark_portal
from pgvault.portal.views import loc
from pgvault.recovery_points import VAULT_STORE
from pgvault.services.crossregion import SecondaryPoint

router = APIRouter(dependencies=[Depends(mark_portal)], include_in_schema=False)
SECONDARY_BI = "/secondary/{region}/{sub}/{rg}/{vault}/instances/{bi}"


@router.get(SECONDARY_BI)
def secondary_instance(
    request: Request, region: str, sub: str, rg: str, vault: str, bi: str, session: Current
) -> Response:
    """One instance in its secondary region: replication lag, the primary datastore's status,
    the recovery points replicated there, Restore to secondary region, and the vault's
    secondary-region jobs."""
    base = loc(sub, rg, region)
    session.require("POST", base + "/fetchSecondaryRecoveryPoints")
    v = session.svc.get_vault(sub, rg, vault)
    item = next(
        (i for i in session.svc.secondary_instances(sub, region)
         if i.view.vault.id == v.id and i.view.instance.name == bi),
        None,
    )  # fmt: skip
    view, points = session.svc.secondary_points(
        sub, region, v.location, f"{v.arm_id}/backupInstances/{bi}"
    )
    jobs = []
    if session.can("POST", base + "/fetchCrossRegionRestoreJobs"):
        jobs = session.svc.cross_region_jobs(sub, region, v.location, v.arm_id)
    context = {
        "session": session,
        "crumbs": [*vault_crumbs(sub, rg, vault), (f"{bi} ({region})", request.url.path)],
        "view": view,
        "item": item,
        "region": region,
        "points": points,
        "jobs": jobs,
        "can_restore": session.can("POST", base + "/crossRegionRestore"),
        "why_not": session.why_not("POST", base + "/crossRegionRestore"),
        "restore_url": f"{views.instance_url(view)}/restore?secondary={region}",
        "views": views,
        "tier": secondary_tier,
    }
    return page(request, "secondary.html", context)


def secondary_tier(sp: SecondaryPoint) -> str:
    """The tier the secondary's copy is in (an archived one needs rehydration first)."""
    return "Vault-standard" if in_vault(sp) else "Archive"


def in_vault(sp: SecondaryPoint) -> bool:
    return sp.replica.tier == VAULT_STORE
