"""Microsoft.DataProtection: vaults, policies, backup instances, recovery points, restores, jobs."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response

from pgvault import arm, restore, vaults
from pgvault import jsonbody as b
from pgvault.api import shapes
from pgvault.api.deps import Auth, Svc, accepted, json_response
from pgvault.errors import BadRequest, Code, UserError
from pgvault.service import InstanceSpec

router = APIRouter()
SUB_DP = "/subscriptions/{sub}/providers/Microsoft.DataProtection"
V = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DataProtection/backupVaults/{vault}"
BI = V + "/backupInstances/{bi}"
JSON = Body(default=None)


def _vault_id(sub: str, rg: str, vault: str) -> str:
    return arm.vault_id(sub, rg, vault)


# -- vaults ---------------------------------------------------------------------------------


def _check_shape(value: Any, default: Any, where: str) -> None:
    """`value` has the JSON shape of `default` (objects, lists, strings, numbers, booleans)."""
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise BadRequest(f"{where} must be a JSON object.", code=Code.InvalidRequestContent)
        for key, item in value.items():
            if key in default:
                _check_shape(item, default[key], f"{where}.{key}")
    elif isinstance(default, list):
        if not isinstance(value, list):
            raise BadRequest(f"{where} must be a JSON array.", code=Code.InvalidRequestContent)
        for i, item in enumerate(value):
            if default:
                _check_shape(item, default[0], f"{where}[{i}]")
    elif isinstance(default, bool):
        if not isinstance(value, bool):
            raise BadRequest(f"{where} must be true or false.", code=Code.InvalidRequestContent)
    elif isinstance(default, int | float):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise BadRequest(f"{where} must be a number.", code=Code.InvalidRequestContent)
    elif isinstance(default, str) and not isinstance(value, str):
        raise BadRequest(f"{where} must be a string.", code=Code.InvalidRequestContent)


def _vault_properties(body: Any) -> dict[str, Any]:
    """The vault settings of a PUT/PATCH, each shaped like its default (never e.g. null)."""
    props = b.as_dict(b.get(body, "properties"), "properties")
    _check_shape(props, vaults.DEFAULT_PROPERTIES, "properties")
    return props


@router.put(V)
def put_vault(sub: str, rg: str, vault: str, svc: Svc, _: Auth, body: Any = JSON) -> JSONResponse:
    props = _vault_properties(body)
    tags = b.as_dict(b.get(body, "tags"), "tags")
    v, created = svc.put_vault(sub, rg, vault, b.require(body, "location"), props, tags)
    return json_response(shapes.vault(v), 201 if created else 200)


@router.patch(V)
def patch_vault(sub: str, rg: str, vault: str, svc: Svc, _: Auth, body: Any = JSON) -> JSONResponse:
    current = svc.get_vault(sub, rg, vault)
    props = _vault_properties(body)
    tags = b.as_dict(b.get(body, "tags"), "tags")
    v, _created = svc.put_vault(sub, rg, vault, current.location, props, tags)
    return json_response(shapes.vault(v))


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
    sub: str, rg: str, vault: str, name: str, svc: Svc, _: Auth, body: Any = JSON
) -> JSONResponse:
    props = b.as_dict(b.get(body, "properties"), "properties")
    v, p = svc.put_policy(sub, rg, vault, name, props)
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


def _spec(props: Any) -> InstanceSpec:
    props = b.as_dict(props, "properties")
    database_id = b.require(props, "dataSourceInfo", "resourceID")
    return InstanceSpec(
        database_id=database_id,
        policy_id=b.require(props, "policyInfo", "policyId"),
        secret_uri=b.require(props, "datasourceAuthCredentials", "secretStoreResource", "uri"),
        friendly_name=b.get(props, "friendlyName"),
    )


def _lro(request: Request, svc: Svc, scope: str, action: Any) -> Response:
    """Run `action` and answer 202 with an operation; user errors become a Failed operation."""
    try:
        job_id = action()
        op = svc.record_operation(job_id=job_id)
    except UserError as exc:
        op = svc.record_operation(error=exc)
    return accepted(request, scope, op.id)


@router.post(V + "/validateForBackup")
def validate_for_backup(
    request: Request, sub: str, rg: str, vault: str, svc: Svc, _: Auth, body: Any = JSON
) -> Response:
    spec = _spec(
        b.get(b.require(body, "backupInstance", kind=dict), "properties")
        or b.get(body, "backupInstance")
    )

    def action() -> None:
        svc.validate_for_backup(sub, rg, vault, spec)

    return _lro(request, svc, _vault_id(sub, rg, vault), action)


@router.put(BI)
def put_instance(
    sub: str, rg: str, vault: str, bi: str, svc: Svc, _: Auth, body: Any = JSON
) -> JSONResponse:
    view = svc.put_instance(sub, rg, vault, bi, _spec(b.get(body, "properties")))
    return json_response(shapes.instance(view), 201)


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
    svc.delete_instance(sub, rg, vault, bi)
    op = svc.record_operation()
    return accepted(request, _vault_id(sub, rg, vault), op.id)


def _protection(action: str) -> Any:
    def handler(
        request: Request,
        sub: str,
        rg: str,
        vault: str,
        bi: str,
        svc: Svc,
        _: Auth,
        body: Any = JSON,
    ) -> Response:
        svc.protection_action(sub, rg, vault, bi, action)
        op = svc.record_operation()
        return accepted(request, _vault_id(sub, rg, vault), op.id)

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
    svc.undelete_instance(sub, rg, vault, bi)
    op = svc.record_operation()
    return accepted(request, _vault_id(sub, rg, vault), op.id)


@router.post(BI + "/backup")
def adhoc_backup(
    request: Request,
    sub: str,
    rg: str,
    vault: str,
    bi: str,
    svc: Svc,
    _: Auth,
    body: Any = JSON,
) -> Response:
    opts = b.as_dict(b.get(body, "backupRuleOptions"), "backupRuleOptions")
    rule = b.get(opts, "ruleName")
    tag = b.get(opts, "triggerOption", "retentionTagOverride")
    for value, where in ((rule, "ruleName"), (tag, "triggerOption.retentionTagOverride")):
        if value is not None and not isinstance(value, str):
            raise BadRequest(
                f"backupRuleOptions.{where} must be a string.",
                code=Code.InvalidRequestContent,
                target=f"backupRuleOptions.{where}",
            )
    job = svc.adhoc_backup(sub, rg, vault, bi, rule, tag)
    op = svc.record_operation(job_id=job.id)
    return accepted(request, _vault_id(sub, rg, vault), op.id)


# -- recovery points ------------------------------------------------------------------------

_FILTER = re.compile(r"(startDate|endDate)\s+eq\s+'([^']+)'", re.IGNORECASE)


def _filter_dates(text: str | None) -> tuple[datetime | None, datetime | None]:
    start = end = None
    for key, value in _FILTER.findall(text or ""):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest(
                f"Invalid date {value!r} in $filter.", code=Code.InvalidFilter
            ) from None
        if when.tzinfo is None:
            from datetime import UTC

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
    filter_: str | None = Query(default=None, alias="$filter"),
) -> JSONResponse:
    start, end = _filter_dates(filter_)
    view, points = svc.list_points(sub, rg, vault, bi, start, end)
    return json_response(shapes.page([shapes.recovery_point(view, p) for p in points]))


@router.get(BI + "/recoveryPoints/{point}")
def get_point(
    sub: str, rg: str, vault: str, bi: str, point: str, svc: Svc, _: Auth
) -> JSONResponse:
    view, rp = svc.get_point(sub, rg, vault, bi, point)
    return json_response(shapes.recovery_point(view, rp))


# -- restore --------------------------------------------------------------------------------


def _server_of(database_id: str) -> str:
    """The server id a database id sits under (`.../servers/S/databases/D` -> `.../servers/S`)."""
    segs = database_id.rstrip("/").split("/")
    lowered = [s.lower() for s in segs]
    if "databases" in lowered:
        return "/".join(segs[: len(lowered) - 1 - lowered[::-1].index("databases")])
    return database_id


def restore_request(obj: Any) -> restore.RestoreRequest:
    """Parse Azure's AzureBackupRestoreRequest (database or files target)."""
    obj = b.as_dict(obj, "restore request")
    point = b.require(obj, "recoveryPointId")
    source = b.get(obj, "sourceDataStoreType") or "VaultStore"
    info = b.as_dict(b.require(obj, "restoreTargetInfo", kind=dict), "restoreTargetInfo")
    option = b.get(info, "recoveryOption") or "FailIfExists"
    if not b.same(option, "FailIfExists"):
        raise BadRequest(
            "recoveryOption must be FailIfExists: restores never overwrite a database.",
            code=Code.UserErrorInvalidRecoveryOption,
        )
    kind = b.get(info, "objectType") or ""
    if b.same(kind, "RestoreFilesTargetInfo") or b.get(info, "targetDetails") is not None:
        details = b.as_dict(b.require(info, "targetDetails", kind=dict), "targetDetails")
        target: restore.DatabaseTarget | restore.FilesTarget = restore.FilesTarget(
            url=b.require(details, "url"),
            file_prefix=restore.check_file_prefix(b.require(details, "filePrefix")),
            arm_id=b.get(details, "targetResourceArmId"),
            location=b.get(info, "restoreLocation"),
        )
    else:
        db_id = b.require(info, "datasourceInfo", "resourceID")
        database = arm.parse(db_id).name_of("databases") or b.get(
            info, "datasourceInfo", "resourceName"
        )
        if not database:
            raise BadRequest(
                "restoreTargetInfo.datasourceInfo.resourceID must name the new database "
                "('.../servers/SERVER/databases/NEWDB').",
                code=Code.InvalidRequestContent,
            )
        server_id = b.get(info, "datasourceSetInfo", "resourceID") or _server_of(db_id)
        target = restore.DatabaseTarget(
            server_id=server_id,
            database=database,
            secret_uri=b.require(info, "datasourceAuthCredentials", "secretStoreResource", "uri"),
            location=b.get(info, "restoreLocation"),
        )
    return restore.RestoreRequest(
        point,
        source,
        target,
        b.get(obj, "rehydrationPriority"),
        b.get(obj, "rehydrationRetentionDuration"),
    )


@router.post(BI + "/rehydrate")
def rehydrate(
    request: Request,
    sub: str,
    rg: str,
    vault: str,
    bi: str,
    svc: Svc,
    _: Auth,
    body: Any = JSON,
) -> Response:
    """Rehydrate an archived point into the vault tier for a while (a Rehydrate job)."""
    job = svc.rehydrate(
        sub,
        rg,
        vault,
        bi,
        b.require(body, "recoveryPointId"),
        b.get(body, "rehydrationPriority"),
        b.get(body, "rehydrationRetentionDuration"),
    )
    op = svc.record_operation(job_id=job.id)
    return accepted(request, _vault_id(sub, rg, vault), op.id)


@router.post(BI + "/validateRestore")
def validate_restore(
    request: Request,
    sub: str,
    rg: str,
    vault: str,
    bi: str,
    svc: Svc,
    _: Auth,
    body: Any = JSON,
) -> Response:
    req = restore_request(b.get(body, "restoreRequestObject") or body)

    def action() -> None:
        svc.validate_restore(sub, rg, vault, bi, req)

    return _lro(request, svc, _vault_id(sub, rg, vault), action)


@router.post(BI + "/restore")
def trigger_restore(
    request: Request,
    sub: str,
    rg: str,
    vault: str,
    bi: str,
    svc: Svc,
    _: Auth,
    body: Any = JSON,
) -> Response:
    req = restore_request(body)
    return _lro(
        request,
        svc,
        _vault_id(sub, rg, vault),
        lambda: svc.trigger_restore(sub, rg, vault, bi, req).id,
    )


# -- jobs and operations --------------------------------------------------------------------


@router.get(V + "/backupJobs")
def list_jobs(
    sub: str,
    rg: str,
    vault: str,
    svc: Svc,
    _: Auth,
    skip: int = Query(default=0, alias="$skip", ge=0, le=2**31 - 1),
    top: int = Query(default=200, alias="$top", ge=1, le=1000),
) -> JSONResponse:
    views = svc.list_jobs(sub, rg, vault, limit=top, offset=skip)
    return json_response(shapes.page([shapes.job(v) for v in views]))


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
        return JSONResponse(status_code=400, content={"error": op.error})
    body: dict[str, Any] = {"objectType": "OperationJobExtendedInfo"}
    if view is not None:
        body["jobId"] = f"{view.vault.arm_id}/backupJobs/{view.job.id}"
    return json_response(body)
