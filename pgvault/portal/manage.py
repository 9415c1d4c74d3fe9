"""Changes from the portal: Backup now, lifecycle actions, role assignments; and the IAM and
audit pages. Every POST carries the session's CSRF token (`checked`) and is authorised and
audited under the action the equivalent API call needs."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from pgvault import arm
from pgvault.errors import BadRequest, Code
from pgvault.portal import views
from pgvault.portal.render import page
from pgvault.portal.routes import BI, V, crumbs
from pgvault.portal.session import Session, checked, current, mark_portal
from pgvault.schemas.base import parse
from pgvault.schemas.dataprotection import VaultBody, VaultPatch

router = APIRouter(dependencies=[Depends(mark_portal)], include_in_schema=False)
Current = Annotated[Session, Depends(current)]
Checked = Annotated[Session, Depends(checked)]
AUTHZ = "/providers/Microsoft.Authorization/roleAssignments"
LIFECYCLE = ("stopProtection", "suspendBackups", "resumeProtection", "resumeBackups")
CONFIRMED = ("stopProtection", "suspendBackups")  #: actions the form must confirm


def _back(url: str) -> Response:
    return RedirectResponse(url if url.startswith("/") and not url.startswith("//") else "/", 303)


@router.post("/vaults")
def create_vault(
    session: Checked,
    sub: Annotated[str, Form()],
    rg: Annotated[str, Form()],
    name: Annotated[str, Form()],
    region: Annotated[str, Form()],
    redundancy: Annotated[str, Form()] = "LocallyRedundant",
    soft_delete_days: Annotated[int, Form(ge=14, le=180)] = 14,
) -> Response:
    """Create a backup vault: the API's vault body (`VaultBody`), from the form's fields."""
    body = parse(
        VaultBody,
        {
            "location": region,
            "properties": {
                "storageSettings": [{"datastoreType": "VaultStore", "type": redundancy}],
                "securitySettings": {
                    "softDeleteSettings": {
                        "state": "On",
                        "retentionDurationInDays": soft_delete_days,
                    }
                },
            },
        },
    )
    arm_path = arm.vault_id(sub, rg, name)
    session.require("PUT", arm_path)
    vault, _ = session.svc.put_vault(sub, rg, name, body.location, body.settings(), {})
    session.audit("PUT", arm_path, 201)
    return _back(views.vault_url(vault))


@router.post(BI + "/backup")
def backup_now(
    sub: str, rg: str, vault: str, bi: str, session: Checked,
    tag: Annotated[str, Form()] = "Default",
) -> Response:  # fmt: skip
    """Backup now, kept by the retention rule the tag names (Default unless chosen)."""
    view = session.svc.get_instance(sub, rg, vault, bi)
    arm_path = views.instance_arm(view) + "/backup"
    session.require("POST", arm_path)
    job = session.svc.adhoc_backup(sub, rg, vault, bi, None, tag or None)
    session.audit("POST", arm_path, 202)
    return _back(f"{views.vault_url(view.vault)}/jobs/{job.id}")


@router.post(BI + "/lifecycle")
def lifecycle(
    sub: str, rg: str, vault: str, bi: str, session: Checked,
    action: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
) -> Response:  # fmt: skip
    """Stop / suspend / resume protection, or delete (soft delete when the vault keeps it).
    Stopping, suspending and deleting need the form's confirmation, as Azure's dialogs ask."""
    view = session.svc.get_instance(sub, rg, vault, bi)
    inst_arm = views.instance_arm(view)
    if action == "delete":
        session.require("DELETE", inst_arm)
        session.svc.delete_instance(sub, rg, vault, bi)
        session.audit("DELETE", inst_arm, 202)
        return _back(views.vault_url(view.vault))
    if action not in LIFECYCLE:
        raise BadRequest(f"Unknown action {action!r}.", code=Code.BadParameter)
    if action in CONFIRMED and not confirm:
        raise BadRequest(
            "Stopping backup needs confirmation: tick the confirmation box, then Apply.",
            code=Code.BadParameter,
        )
    session.require("POST", f"{inst_arm}/{action}")
    session.svc.protection_action(sub, rg, vault, bi, action)
    session.audit("POST", f"{inst_arm}/{action}", 202)
    return _back(views.instance_url(view))


@router.post(V + "/deleted/{bi}/undelete")
def undelete(sub: str, rg: str, vault: str, bi: str, session: Checked) -> Response:
    v = session.svc.get_vault(sub, rg, vault)
    arm_path = f"{v.arm_id}/deletedBackupInstances/{bi}/undelete"
    session.require("POST", arm_path)
    session.svc.undelete_instance(sub, rg, vault, bi)
    session.audit("POST", arm_path, 202)
    return _back(f"{views.vault_url(v)}/instances/{bi}")


@router.post(V + "/jobs/{job_id}/cancel")
def cancel_job(sub: str, rg: str, vault: str, job_id: str, session: Checked) -> Response:
    """Cancel a queued or running job, authorised like the API's backupJobs/{id}/cancel; a
    restore already transferring data is refused (JobCannotBeCancelled, shown as a page)."""
    v = session.svc.get_vault(sub, rg, vault)
    arm_path = f"{v.arm_id}/backupJobs/{job_id}/cancel"
    session.require("POST", arm_path)
    session.svc.cancel_job(sub, rg, vault, job_id)
    session.audit("POST", arm_path, 200)
    return _back(f"{views.vault_url(v)}/jobs/{job_id}")


@router.post(V + "/crossregionrestore")
def enable_crr(
    sub: str, rg: str, vault: str, session: Checked, confirm: Annotated[str, Form()] = ""
) -> Response:
    """Turn Cross Region Restore on (a PATCH of the vault's feature settings, as the API
    takes it). Irreversible, so the form must confirm; a vault that is not GeoRedundant is
    refused by the same check as the API's."""
    v = session.svc.get_vault(sub, rg, vault)
    session.require("PATCH", v.arm_id)
    if not confirm:
        raise BadRequest(
            "Enabling Cross Region Restore cannot be undone: tick the confirmation box first.",
            code=Code.BadParameter,
        )
    body = parse(
        VaultPatch,
        {"properties": {"featureSettings": {"crossRegionRestoreSettings": {"state": "Enabled"}}}},
    )
    session.svc.put_vault(sub, rg, vault, v.location, body.settings(), body.tag_map())
    session.audit("PATCH", v.arm_id, 200)
    return _back(views.vault_url(v))


@router.post("/keyvaults/{sub}/{rg}/{kv}/secrets")
def set_secret(
    sub: str,
    rg: str,
    kv: str,
    session: Checked,
    name: Annotated[str, Form()],
    value: Annotated[str, Form()],
) -> Response:
    """Set a secret's value (write-only: no page ever shows it, the form never echoes it)."""
    vault = session.svc.get_keyvault(sub, rg, kv)
    arm_path = f"{vault.arm_id}/secrets/{name}"
    session.require("PUT", arm_path)
    session.svc.put_secret(sub, rg, kv, name, value, None)
    session.audit("PUT", arm_path, 200)
    return _back("/resources#kvs")


# -- access control (IAM) ---------------------------------------------------------------------


@router.get("/iam")
def iam(request: Request, session: Current, scope: str = "/") -> Response:
    """Role assignments at this scope and inherited from above, with add and remove."""
    session.require("GET", scope.rstrip("/") + AUTHZ)
    assignments = session.svc.access.list_assignments(scope)
    principals = {p.id: p for p in session.svc.access.list_principals()}
    members = [(p.name, p.name, p.type) for p in principals.values()]
    members += [
        (f"vault:{v.name}", f"{v.name} (vault managed identity)", "ServicePrincipal")
        for v in views.visible_vaults(session)
    ]
    can_write = session.can("PUT", scope.rstrip("/") + AUTHZ + "/new")
    context = {
        "session": session,
        "crumbs": crumbs(("Access control (IAM)", f"/iam?scope={scope}")),
        "scope": scope,
        "assignments": assignments,
        "principals": principals,
        "roles": session.svc.access.roles(),
        "role_names": {r.id: r.name for r in session.svc.access.roles()},
        "members": members,
        "can_write": can_write,
        "why_not": session.why_not("PUT", scope.rstrip("/") + AUTHZ + "/new"),
    }
    return page(request, "iam.html", context)


@router.post("/iam/grant")
def grant(
    session: Checked,
    role: Annotated[str, Form()],
    scope: Annotated[str, Form()],
    assignee: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Add a role assignment (also the review tab's one-click Grant)."""
    assignment_id = str(uuid.uuid4())
    arm_path = f"{scope.rstrip('/')}{AUTHZ}/{assignment_id}"
    session.require("PUT", arm_path)
    session.svc.access.create_assignment(session.caller, scope, role, assignee, assignment_id)
    session.audit("PUT", arm_path, 201)
    return _back(next)


@router.post("/iam/remove")
def remove(
    session: Checked,
    assignment: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
) -> Response:
    found = session.svc.access.get_assignment(assignment)
    arm_path = f"{found.scope.rstrip('/')}{AUTHZ}/{found.id}"
    session.require("DELETE", arm_path)
    session.svc.access.delete_assignment(assignment)
    session.audit("DELETE", arm_path, 200)
    return _back(next)


@router.get("/audit")
def audit_log(request: Request, session: Current, outcome: str = "") -> Response:
    subs = session.svc.list_subscriptions()
    sub = subs[0].id if subs else "default"
    session.require(
        "GET", f"/subscriptions/{sub}/providers/Microsoft.Insights/eventtypes/management/values"
    )
    events = session.svc.access.audit_events(None, outcome=outcome or None, limit=200)
    context = {
        "session": session,
        "crumbs": crumbs(("Audit log", "/audit")),
        "events": events,
        "outcome": outcome,
    }
    return page(request, "audit.html", context)
