"""Secondary-region calls (cross-region restore) in Azure's shapes, and job cancel.

Azure puts them under the secondary region, `/subscriptions/{s}/resourceGroups/{rg}/
providers/Microsoft.DataProtection/locations/{region}/…`, and checks them at the
subscription (see `actions.requested`). `secondaryBackupInstances` and
`backupJobs/{id}/cancel` are pgvault extensions (the portal's secondary-region filter
and its Cancel button).
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from pgvault import arm
from pgvault.api import lro, shapes
from pgvault.api.dataprotection import filter_dates
from pgvault.api.deps import Auth, Svc, json_response
from pgvault.errors import BadRequest, Code
from pgvault.schemas.dataprotection import (
    CrossRegionJobBody,
    CrossRegionJobsBody,
    CrossRegionRestoreBody,
    SecondaryPointsBody,
)

router = APIRouter()
LOC = (
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DataProtection/locations/{region}"
)
V = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DataProtection/backupVaults/{vault}"


def _vault_of(instance_id: str) -> str:
    """The vault id a backup instance id sits under (where its operations are followed)."""
    rid = arm.parse(instance_id)
    vault = rid.name_of("backupVaults")
    if rid.resource_group is None or vault is None:
        raise BadRequest(
            f"{instance_id!r} is not a backup instance id.",
            code=Code.InvalidResourceId,
            target="crossRegionRestoreDetails.sourceBackupInstanceId",
        )
    return arm.vault_id(rid.subscription, rid.resource_group, vault)


@router.post(LOC + "/fetchSecondaryRecoveryPoints")
def fetch_secondary_points(
    sub: str,
    rg: str,
    region: str,
    svc: Svc,
    _: Auth,
    body: SecondaryPointsBody,
    filter_: str | None = Query(default=None, alias="$filter"),
    skip_token: str | None = Query(default=None, alias="$skipToken"),
) -> JSONResponse:
    """The instance's recovery points available in the secondary region, latest first."""
    start, end = filter_dates(filter_)
    view, points = svc.secondary_points(
        sub, region, body.source_region, body.source_backup_instance_id
    )
    chosen = [
        p
        for p in points
        if (start is None or p.point.created_at >= start)
        and (end is None or p.point.created_at <= end)
    ]
    return json_response(shapes.page([shapes.secondary_point(view, p) for p in chosen]))


@router.post(LOC + "/validateCrossRegionRestore")
def validate_cross_region_restore(
    request: Request,
    sub: str,
    rg: str,
    region: str,
    svc: Svc,
    _: Auth,
    body: CrossRegionRestoreBody,
) -> Response:
    details = body.cross_region_restore_details
    req = body.to_request(region)

    def action() -> None:
        svc.validate_cross_region_restore(
            sub, region, details.source_region, details.source_backup_instance_id, req
        )

    scope = _vault_of(details.source_backup_instance_id)
    return lro.start(request, svc, scope, action, failures_in_operation=True)


@router.post(LOC + "/crossRegionRestore")
def cross_region_restore(
    request: Request,
    sub: str,
    rg: str,
    region: str,
    svc: Svc,
    _: Auth,
    body: CrossRegionRestoreBody,
) -> Response:
    details = body.cross_region_restore_details
    req = body.to_request(region)
    return lro.start(
        request,
        svc,
        _vault_of(details.source_backup_instance_id),
        lambda: (
            svc.cross_region_restore(
                sub, region, details.source_region, details.source_backup_instance_id, req
            ).id
        ),
        failures_in_operation=True,
    )


@router.post(LOC + "/fetchCrossRegionRestoreJob")
def fetch_cross_region_job(
    sub: str, rg: str, region: str, svc: Svc, _: Auth, body: CrossRegionJobBody
) -> JSONResponse:
    view = svc.cross_region_job(
        sub, region, body.source_region, body.source_backup_vault_id, body.job_id
    )
    return json_response(shapes.job(view))


@router.post(LOC + "/fetchCrossRegionRestoreJobs")
def fetch_cross_region_jobs(
    sub: str, rg: str, region: str, svc: Svc, _: Auth, body: CrossRegionJobsBody
) -> JSONResponse:
    views = svc.cross_region_jobs(sub, region, body.source_region, body.source_backup_vault_id)
    return json_response(shapes.page([shapes.job(v) for v in views]))


@router.get(LOC + "/secondaryBackupInstances")
def secondary_instances(sub: str, rg: str, region: str, svc: Svc, _: Auth) -> JSONResponse:
    """pgvault extension: the instances whose secondary region is `region`, with their
    replication lag and whether the primary datastore answers."""
    items = svc.secondary_instances(sub, region)
    return json_response(shapes.page([shapes.secondary_instance(i) for i in items]))


@router.post(V + "/backupJobs/{job_id}/cancel")
def cancel_job(sub: str, rg: str, vault: str, job_id: str, svc: Svc, _: Auth) -> JSONResponse:
    """pgvault extension: cancel a queued or running job (refused once a restore's data
    transfer has started, JobCannotBeCancelled)."""
    return json_response(shapes.job(svc.cancel_job(sub, rg, vault, job_id)))
