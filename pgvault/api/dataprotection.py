"""Microsoft.DataProtection: vaults, policies, backup instances, recovery points, restores, jobs."""

from __future__ import annotations

import re
from collections.abc import Callable, Sized
from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from pgvault import arm
from pgvault.api import limits, lro, shapes
from pgvault.api.deps import Auth, Svc, base_url, json_response
from pgvault.errors import BadRequest, Code, PgVaultError
from pgvault.schemas.dataprotection import (
    AdhocBackupBody,
    InstanceBody,
    NotificationBody,
    PolicyBody,
    RehydrateBody,
    RestoreRequestBody,
    ValidateForBackupBody,
    ValidateForModifyBody,
    ValidateRestoreBody,
    VaultBody,
    VaultPatch,
)

router = APIRouter()
SUB_DP = "/subscriptions/{sub}/providers/Microsoft.DataProtection"
V = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DataProtection/backupVaults/{vault}"
BI = V + "/backupInstances/{bi}"


def _vault_id(sub: str, rg: str, vault: str) -> str:
    return arm.vault_id(sub, rg, vault)


# -- vaults ---------------------------------------------------------------------------------

NOTIFY = V + "/notificationSettings/default"
#: Recovery points per page of a list (`$top` changes it, up to 1000).
POINTS_PAGE = 200
#: Jobs per page: a job is ~2 kB of JSON (phases, details), ten times a point.
JOBS_PAGE = 50


def _notification_settings(vault_arm_id: str, summary: dict[str, object]) -> dict[str, object]:
    """pgvault's extension resource: how many destinations, never the URLs themselves."""
    return {
        "id": f"{vault_arm_id}/notificationSettings/default",
        "name": "default",
        "type": "Microsoft.DataProtection/backupVaults/notificationSettings",
        "properties": summary,
    }


@router.put(V)
def put_vault(sub: str, rg: str, vault: str, svc: Svc, _: Auth, body: VaultBody) -> JSONResponse:
    v, created = svc.put_vault(
        sub, rg, vault, body.location, body.settings(), limits.checked_tags(body.tag_map())
    )
    return json_response(shapes.vault(v), 201 if created else 200)


@router.patch(V)
def patch_vault(
    sub: str, rg: str, vault: str, svc: Svc, _: Auth, body: VaultPatch | None = None
) -> JSONResponse:
    current = svc.get_vault(sub, rg, vault)
    body = body or VaultPatch()
    v, _created = svc.put_vault(
        sub, rg, vault, current.location, body.settings(), limits.checked_tags(body.tag_map())
    )
    return json_response(shapes.vault(v))


@router.put(NOTIFY)
def put_notifications(
    sub: str, rg: str, vault: str, svc: Svc, _: Auth, body: NotificationBody
) -> JSONResponse:
    v, summary = svc.put_notifications(sub, rg, vault, list(body.properties.urls))
    return json_response(_notification_settings(v.arm_id, summary))


@router.get(NOTIFY)
def get_notifications(sub: str, rg: str, vault: str, svc: Svc, _: Auth) -> JSONResponse:
    v, summary = svc.get_notifications(sub, rg, vault)
    return json_response(_notification_settings(v.arm_id, summary))


@router.post(NOTIFY + "/test")
def send_test_notification(sub: str, rg: str, vault: str, svc: Svc, _: Auth) -> JSONResponse:
    """Send a test alert to the vault's destinations now; says whether all took it."""
    return json_response(svc.test_notifications(sub, rg, vault))


@router.get(V)
def get_vault(sub: str, rg: str, vault: str, svc: Svc, _: Auth) -> JSONResponse:
    return json_response(shapes.vault(svc.get_vault(sub, rg, vault)))


@router.delete(V)
def delete_vault(sub: str, rg: str, vault: str, svc: Svc, _: Auth) -> Response:
    svc.delete_vault(sub, rg, vault)
    return Response(status_code=200)


@router.get(
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DataProtection/backupVaults"
)
def list_vaults_rg(sub: str, rg: str, svc: Svc, _: Auth) -> JSONResponse:
    return json_response(shapes.page([shapes.vault(v) for v in svc.list_vaults(sub, rg)]))


@router.get(SUB_DP + "/backupVaults")
def list_vaults_sub(sub: str, svc: Svc, _: Auth) -> JSONResponse:
    return json_response(shapes.page([shapes.vault(v) for v in svc.list_vaults(sub, None)]))


# -- policies -------------------------------------------------------------------------------


@router.put(V + "/backupPolicies/{name}")
def put_policy(
    sub: str, rg: str, vault: str, name: str, svc: Svc, _: Auth, body: PolicyBody | None = None
) -> JSONResponse:
    v, p = svc.put_policy(sub, rg, vault, name, (body or PolicyBody()).rules())
    return json_response(shapes.policy(v, p))


@router.get(V + "/backupPolicies/{name}")
def get_policy(sub: str, rg: str, vault: str, name: str, svc: Svc, _: Auth) -> JSONResponse:
    v, p = svc.get_policy(sub, rg, vault, name)
    return json_response(shapes.policy(v, p))


@router.get(V + "/backupPolicies")
def list_policies(sub: str, rg: str, vault: str, svc: Svc, _: Auth) -> JSONResponse:
    v, items = svc.list_policies(sub, rg, vault)
    return json_response(shapes.page([shapes.policy(v, p) for p in items]))


@router.delete(V + "/backupPolicies/{name}")
def delete_policy(sub: str, rg: str, vault: str, name: str, svc: Svc, _: Auth) -> Response:
    svc.delete_policy(sub, rg, vault, name)
    return Response(status_code=200)


# -- backup instances -----------------------------------------------------------------------


@router.post(V + "/validateForBackup")
def validate_for_backup(
    request: Request, sub: str, rg: str, vault: str, svc: Svc, _: Auth, body: ValidateForBackupBody
) -> Response:
    spec = body.to_spec()

    def action() -> None:
        svc.validate_for_backup(sub, rg, vault, spec)

    return lro.start(request, svc, _vault_id(sub, rg, vault), action, failures_in_operation=True)


@router.post(BI + "/validateForModifyBackup")
def validate_for_update(
    request: Request,
    sub: str,
    rg: str,
    vault: str,
    bi: str,
    svc: Svc,
    _: Auth,
    body: ValidateForModifyBody,
) -> Response:
    """What `az dataprotection backup-instance validate-for-update` asks before an update."""
    spec = body.to_spec()

    def action() -> None:
        svc.validate_for_update(sub, rg, vault, bi, spec)

    return lro.start(request, svc, _vault_id(sub, rg, vault), action, failures_in_operation=True)


@router.put(BI)
def put_instance(
    sub: str, rg: str, vault: str, bi: str, svc: Svc, _: Auth, body: InstanceBody
) -> JSONResponse:
    view, created = svc.put_instance(sub, rg, vault, bi, body.to_spec())
    return json_response(shapes.instance(view), 201 if created else 200)


@router.get(BI)
def get_instance(sub: str, rg: str, vault: str, bi: str, svc: Svc, _: Auth) -> JSONResponse:
    return json_response(shapes.instance(svc.get_instance(sub, rg, vault, bi)))


@router.get(V + "/backupInstances")
def list_instances(sub: str, rg: str, vault: str, svc: Svc, _: Auth) -> JSONResponse:
    return json_response(
        shapes.page([shapes.instance(v) for v in svc.list_instances(sub, rg, vault)])
    )


@router.delete(BI)
def delete_instance(
    request: Request, sub: str, rg: str, vault: str, bi: str, svc: Svc, _: Auth
) -> Response:
    """Soft-delete (or, with soft delete off, delete) an instance; an LRO like Azure's."""

    def action() -> None:
        svc.delete_instance(sub, rg, vault, bi)

    return lro.start(request, svc, _vault_id(sub, rg, vault), action)


def _protection(action: str) -> Callable[..., Response]:
    def handler(
        request: Request, sub: str, rg: str, vault: str, bi: str, svc: Svc, _: Auth
    ) -> Response:
        def change() -> None:
            svc.protection_action(sub, rg, vault, bi, action)

        return lro.start(request, svc, _vault_id(sub, rg, vault), change)

    handler.__name__ = action
    handler.__doc__ = f"{action}: change the instance's protection state (202, then Succeeded)."
    return handler


for _action in ("stopProtection", "suspendBackups", "resumeProtection", "resumeBackups"):
    router.post(BI + "/" + _action, name=_action)(_protection(_action))


@router.get(V + "/deletedBackupInstances")
def list_deleted(sub: str, rg: str, vault: str, svc: Svc, _: Auth) -> JSONResponse:
    views = svc.list_deleted_instances(sub, rg, vault)
    return json_response(shapes.page([shapes.deleted_instance(v) for v in views]))


@router.get(V + "/deletedBackupInstances/{bi}")
def get_deleted(sub: str, rg: str, vault: str, bi: str, svc: Svc, _: Auth) -> JSONResponse:
    return json_response(shapes.deleted_instance(svc.get_deleted_instance(sub, rg, vault, bi)))


@router.post(V + "/deletedBackupInstances/{bi}/undelete")
def undelete(
    request: Request, sub: str, rg: str, vault: str, bi: str, svc: Svc, _: Auth
) -> Response:
    def action() -> None:
        svc.undelete_instance(sub, rg, vault, bi)

    return lro.start(request, svc, _vault_id(sub, rg, vault), action)


@router.post(BI + "/backup")
def adhoc_backup(
    request: Request,
    sub: str,
    rg: str,
    vault: str,
    bi: str,
    svc: Svc,
    _: Auth,
    body: AdhocBackupBody | None = None,
) -> Response:
    options = body or AdhocBackupBody()
    return lro.start(
        request,
        svc,
        _vault_id(sub, rg, vault),
        lambda: svc.adhoc_backup(sub, rg, vault, bi, options.rule_name, options.retention_tag).id,
    )


# -- recovery points ------------------------------------------------------------------------

_FILTER = re.compile(r"(startDate|endDate)\s+eq\s+'([^']+)'", re.IGNORECASE)


def filter_dates(text: str | None) -> tuple[datetime | None, datetime | None]:
    """(startDate, endDate) of a recovery-point `$filter`, in UTC when no offset is given."""
    start = end = None
    for key, value in _FILTER.findall(text or ""):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest(
                f"Invalid date {value!r} in $filter.", code=Code.InvalidFilter
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if key.lower() == "startdate":
            start = when
        else:
            end = when
    return start, end


@router.get(BI + "/recoveryPoints")
def list_points(
    sub: str,
    rg: str,
    vault: str,
    bi: str,
    svc: Svc,
    _: Auth,
    request: Request,
    filter_: str | None = Query(default=None, alias="$filter"),
    skiptoken: int = Query(default=0, alias="$skipToken", ge=0, le=2**31 - 1),
    top: int = Query(default=POINTS_PAGE, alias="$top", ge=1, le=1000),
) -> JSONResponse:
    """A page of points, latest first; `nextLink` (Azure's paging, which the SDK and the
    CLI follow) while more remain. A whole list of 10,000 points cost 0.7 s of CPU per call."""
    start, end = filter_dates(filter_)
    view, points = svc.list_points(sub, rg, vault, bi, start, end, limit=top + 1, offset=skiptoken)
    next_link = _next_link(request, skiptoken, top, points)
    return json_response(
        shapes.page([shapes.recovery_point(view, p) for p in points[:top]], next_link)
    )


@router.get(BI + "/recoveryPoints/{point}")
def get_point(
    sub: str, rg: str, vault: str, bi: str, point: str, svc: Svc, _: Auth
) -> JSONResponse:
    view, rp = svc.get_point(sub, rg, vault, bi, point)
    return json_response(shapes.recovery_point(view, rp))


@router.get(BI + "/recoveryPoints/{point}/contents")
def point_contents(
    sub: str, rg: str, vault: str, bi: str, point: str, svc: Svc, _: Auth
) -> JSONResponse:
    """pgvault extension (no Azure counterpart): schemas, tables with sizes and row
    estimates, sequences and large objects of a point, read from its stored TOC."""
    return json_response(svc.point_contents(sub, rg, vault, bi, point))


# -- restore --------------------------------------------------------------------------------


@router.post(BI + "/rehydrate")
def rehydrate(
    request: Request,
    sub: str,
    rg: str,
    vault: str,
    bi: str,
    svc: Svc,
    _: Auth,
    body: RehydrateBody,
) -> Response:
    """Rehydrate an archived point into the vault tier for a while (a Rehydrate job)."""
    return lro.start(
        request,
        svc,
        _vault_id(sub, rg, vault),
        lambda: (
            svc.rehydrate(
                sub,
                rg,
                vault,
                bi,
                body.recovery_point_id,
                body.rehydration_priority,
                body.rehydration_retention_duration,
            ).id
        ),
    )


@router.post(BI + "/validateRestore")
def validate_restore(
    request: Request,
    sub: str,
    rg: str,
    vault: str,
    bi: str,
    svc: Svc,
    _: Auth,
    body: ValidateRestoreBody,
) -> Response:
    req = body.to_request()

    def action() -> None:
        svc.validate_restore(sub, rg, vault, bi, req)

    return lro.start(request, svc, _vault_id(sub, rg, vault), action, failures_in_operation=True)


@router.post(BI + "/restore")
def trigger_restore(
    request: Request,
    sub: str,
    rg: str,
    vault: str,
    bi: str,
    svc: Svc,
    _: Auth,
    body: RestoreRequestBody,
) -> Response:
    req = body.to_request()
    return lro.start(
        request,
        svc,
        _vault_id(sub, rg, vault),
        lambda: svc.trigger_restore(sub, rg, vault, bi, req).id,
        failures_in_operation=True,
    )


# -- jobs and operations --------------------------------------------------------------------


@router.get(V + "/backupJobs")
def list_jobs(
    sub: str,
    rg: str,
    vault: str,
    svc: Svc,
    _: Auth,
    request: Request,
    skip: int = Query(default=0, alias="$skip", ge=0, le=2**31 - 1),
    skiptoken: int = Query(default=0, alias="$skipToken", ge=0, le=2**31 - 1),
    top: int = Query(default=JOBS_PAGE, alias="$top", ge=1, le=1000),
) -> JSONResponse:
    """A page of jobs, newest first, with `nextLink` while more remain (like points).
    `$skip` (the older parameter) still offsets the first page."""
    offset = skip + skiptoken
    views = svc.list_jobs(sub, rg, vault, limit=top + 1, offset=offset)
    return json_response(
        shapes.page([shapes.job(v) for v in views[:top]], _next_link(request, offset, top, views))
    )


def _next_link(request: Request, offset: int, top: int, items: Sized) -> str | None:
    """The next page's URL (Azure's `nextLink`), or None when `items` (read `top + 1`)
    held no more than a page."""
    if len(items) <= top:
        return None
    query = {k: v for k, v in request.query_params.items() if k not in ("$skipToken", "$skip")}
    query["$skipToken"] = str(offset + top)
    return f"{base_url(request)}{request.url.path}?{urlencode(query)}"


@router.get(V + "/backupJobs/{job_id}")
def get_job(sub: str, rg: str, vault: str, job_id: str, svc: Svc, _: Auth) -> JSONResponse:
    return json_response(shapes.job(svc.get_job(sub, rg, vault, job_id)))


@router.get(V + "/operationStatus/{op_id}")
def operation_status(
    request: Request, sub: str, rg: str, vault: str, op_id: str, svc: Svc, _: Auth
) -> JSONResponse:
    op, view = svc.get_operation(op_id)
    url = f"{_vault_id(sub, rg, vault)}/operationStatus/{op_id}"
    return json_response(shapes.operation_status(op, view, url))


@router.get(V + "/operationResults/{op_id}")
def operation_result(sub: str, rg: str, vault: str, op_id: str, svc: Svc, _: Auth) -> Response:
    op, view = svc.get_operation(op_id)
    if op.status == "Failed" and op.error:
        err = PgVaultError(op.error.get("message", ""), code=op.error.get("code"))
        return JSONResponse(
            status_code=400, content={"error": op.error} if op.error else err.to_body()
        )
    body: dict[str, str] = {"objectType": "OperationJobExtendedInfo"}
    if view is not None:
        body["jobId"] = f"{view.vault.arm_id}/backupJobs/{view.job.id}"
    return json_response(body)
