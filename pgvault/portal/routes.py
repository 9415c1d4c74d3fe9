"""The portal's pages: sign in and out, Backup center, vaults, instances, jobs, resources.

Each handler authorises like the API call it mirrors (`Session.require` with that call's
ARM path), calls `Service` methods (directly or through `views`), and renders a template.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from pgvault import arm, retention
from pgvault.api import actions, limits
from pgvault.api.deps import base_url
from pgvault.errors import BadRequest, Code, PgVaultError
from pgvault.portal import chart, views
from pgvault.portal.render import page
from pgvault.portal.session import COOKIE, Session, checked, current, mark_portal, service
from pgvault.services import Service

router = APIRouter(dependencies=[Depends(mark_portal)], include_in_schema=False)
Current = Annotated[Session, Depends(current)]
Checked = Annotated[Session, Depends(checked)]
V = "/vaults/{sub}/{rg}/{vault}"
BI = V + "/instances/{bi}"


def crumbs(*items: tuple[str, str]) -> list[tuple[str, str]]:
    return [("Home", "/"), *items]


def vault_crumbs(sub: str, rg: str, vault: str) -> list[tuple[str, str]]:
    return crumbs(("Backup vaults", "/vaults"), (vault, f"/vaults/{sub}/{rg}/{vault}"))


# -- sign in / out ----------------------------------------------------------------------------


@router.get("/signin")
def signin_form(request: Request, next: str = "/") -> Response:
    return page(request, "signin.html", {"next": _local(next), "crumbs": [], "session": None})


def _local(url: str) -> str:
    """Only a path on this site is followed after sign-in (no open redirect)."""
    return url if url.startswith("/") and not url.startswith("//") else "/"


@router.post("/signin")
def signin(
    request: Request,
    kind: Annotated[str, Form()] = "user",
    name: Annotated[str, Form()] = "",
    secret: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """The credentials the token endpoint takes: a user's name and password, or a service
    principal's client id and secret. The token becomes the session cookie."""
    svc = service(request)
    address = limits.client_address(request.scope, svc.ctx.settings.trusted_proxies)
    try:
        request.app.state.token_rate_by_address.hit(address, f"address {address}")
        request.app.state.token_rate_by_name.hit(name[:200], repr(name[:200]))
        if kind == "service-principal":
            token, lifetime = svc.access.token_for_client(name, secret)
        else:
            token, lifetime = svc.access.token_for_user(name, secret)
    except PgVaultError as exc:
        _audit_failed_sign_in(svc, exc)
        context = {"next": _local(next), "error": exc, "name": name, "kind": kind}
        return page(
            request, "signin.html", {**context, "crumbs": [], "session": None}, status=exc.status
        )
    response = RedirectResponse(_local(next), status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=lifetime,
        httponly=True,
        samesite="strict",
        secure=svc.ctx.settings.tls,
        path="/",
    )
    return response


def _audit_failed_sign_in(svc: Service, exc: PgVaultError) -> None:
    """A refused or throttled sign-in is audited as the API's token endpoint records one
    (no caller: nobody is signed in; never the secret that was tried)."""
    wanted = actions.requested("POST", "/oauth2/token")
    svc.access.record(None, wanted.action, wanted.scope, "POST", exc.status, str(exc.code))


@router.post("/signout")
def signout(session: Checked) -> Response:
    """Revoke the session's token, then forget the cookie."""
    session.svc.access.revoke(session.token)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


# -- Backup center ----------------------------------------------------------------------------


CENTER_ROWS = 100  #: instances the Backup center lists (the counts cover all of them)


@router.get("/")
def backup_center(
    request: Request,
    session: Current,
    vault: str = "",
    state: str = "",
    status: str = "",
    region: str = "",
    datasource: str = "",
) -> Response:
    vs = views.visible_vaults(session)
    chosen = [v for v in vs if not vault or v.name == vault]
    now = session.svc.ctx.clock.now()
    all_instances = views.instances_of(session, chosen)
    matching = [
        i
        for i in all_instances
        if (not state or i.instance.protection_state == state)
        and (not region or views.instance_region(i) == region)
    ]
    instances = matching[:CENTER_ROWS]
    secondary = views.secondary_instances(session, chosen) if region == views.SECONDARY else []
    job_vaults = views.job_vault_ids(session, chosen)
    day, week = session.svc.job_status_windows(
        job_vaults, [now - timedelta(hours=24), now - timedelta(days=7)]
    )
    recent = views.find_jobs(
        session, chosen, views.JobFilter(status=status, region=region), now, 20
    )
    context: dict[str, Any] = {
        "session": session,
        "crumbs": crumbs(("Backup center", "/")),
        "vaults": vs,
        "instances": instances,
        "matching": len(matching),
        "states": sorted({i.instance.protection_state for i in all_instances}),
        "jobs": recent,
        "secondary": secondary[:CENTER_ROWS],
        "day": day,
        "week": week,
        "filters": {"vault": vault, "state": state, "status": status, "region": region,
                    "datasource": datasource},
        "views": views,
        "now": now,
    }  # fmt: skip
    return page(request, "center.html", context)


# -- vaults and instances ---------------------------------------------------------------------


@router.get("/vaults")
def vault_list(request: Request, session: Current) -> Response:
    vs = views.visible_vaults(session)
    subs = session.svc.list_subscriptions()
    context = {
        "session": session,
        "crumbs": crumbs(("Backup vaults", "/vaults")),
        "vaults": vs,
        "views": views,
        "subscriptions": subs,
        "can_create": any(
            session.can(
                "PUT",
                f"/subscriptions/{s.id}/resourceGroups/default/providers/Microsoft.DataProtection/backupVaults/new",
            )
            for s in subs
        ),
    }
    return page(request, "vaults.html", context)


@router.get(V)
def vault_page(
    request: Request, sub: str, rg: str, vault: str, session: Current, region: str = ""
) -> Response:
    v = session.svc.get_vault(sub, rg, vault)
    session.require("GET", v.arm_id)
    listed = session.can("GET", f"{v.arm_id}/backupInstances")
    items = session.svc.list_instances(sub, rg, vault) if listed else []
    items = [i for i in items if not region or views.instance_region(i) == region]
    deleted = (
        session.svc.list_deleted_instances(sub, rg, vault)
        if session.can("GET", f"{v.arm_id}/deletedBackupInstances")
        else []
    )
    policies = (
        session.svc.list_policies(sub, rg, vault)[1]
        if session.can("GET", f"{v.arm_id}/backupPolicies")
        else []
    )
    context = {
        "session": session,
        "crumbs": vault_crumbs(sub, rg, vault),
        "vault": v,
        "instances": items,
        "deleted": deleted,
        "policies": [(p, retention.describe_policy(p.properties)) for p in policies],
        "region": region,
        "views": views,
        "can_list": listed,
    }
    return page(request, "vault.html", context)


PAGE = 100  #: recovery points per page (newest first; "Older points" pages on)


def _before(text: str) -> datetime | None:
    """The `before` paging parameter (exclusive; an ISO time), or None for the newest page."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"Invalid time {text!r}.", code=Code.BadParameter) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)) - timedelta(microseconds=1)


@router.get(BI)
def instance_page(
    request: Request, sub: str, rg: str, vault: str, bi: str, session: Current, before: str = ""
) -> Response:
    view = session.svc.get_instance(sub, rg, vault, bi)
    inst_arm = views.instance_arm(view)
    session.require("GET", inst_arm)
    shown_before = _before(before)
    _, points = session.svc.list_points(sub, rg, vault, bi, end=shown_before, limit=PAGE + 1)
    older = points[PAGE - 1].created_at if len(points) > PAGE else None
    points = points[:PAGE]
    total = session.svc.count_points(sub, rg, vault, bi)
    job_views = session.svc.find_jobs([view.vault.id], instance_id=view.instance.id, limit=50)
    backups = [j for j in reversed(job_views) if j.job.operation == "Backup" and j.job.ended_at]
    oldest_first = list(reversed(points))[-30:]
    size_chart = chart.bars(
        [p.stored_bytes for p in oldest_first],
        "Recovery point size, oldest to newest",
        [
            f"{views.tier(p)} {p.created_at:%Y-%m-%d %H:%M}: {p.stored_bytes} bytes"
            for p in oldest_first
        ],
    )
    duration_chart = chart.bars(
        [views.job_seconds(j.job) or 0.0 for j in backups[-30:]],
        "Backup duration, oldest to newest",
        [
            f"{j.job.created_at:%Y-%m-%d %H:%M}: {views.job_seconds(j.job) or 0:.1f} s"
            for j in backups[-30:]
        ],
    )
    context = {
        "session": session,
        "crumbs": [*vault_crumbs(sub, rg, vault), (bi, views.instance_url(view))],
        "view": view,
        "inst_arm": inst_arm,
        "points": points,
        "total_points": total,
        "older": older.isoformat() if older else None,
        "jobs": job_views,
        "size_chart": size_chart,
        "duration_chart": duration_chart,
        "views": views,
        "region": views.instance_region(view),
        "secondary_url": views.secondary_instance_url(view),
        "tags": [
            str(r.get("name"))
            for r in view.policy.properties.get("policyRules", [])
            if r.get("objectType") == "AzureRetentionRule"
        ]
        or ["Default"],
    }
    return page(request, "instance.html", context)


# -- jobs -------------------------------------------------------------------------------------


@router.get("/jobs")
def job_list(
    request: Request,
    session: Current,
    operation: str = "",
    status: str = "",
    vault: str = "",
    instance: str = "",
    region: str = "",
    hours: Annotated[int, Query(ge=0, le=24 * 366)] = 0,
) -> Response:
    vs = views.visible_vaults(session)
    chosen = [v for v in vs if not vault or v.name == vault]
    now = session.svc.ctx.clock.now()
    f = views.JobFilter(operation, status, vault, instance, region, hours)
    listed = views.find_jobs(session, chosen, f, now, 200)
    context = {
        "session": session,
        "crumbs": crumbs(("Backup jobs", "/jobs")),
        "jobs": listed,
        "vaults": vs,
        "filters": f,
        "views": views,
        "now": now,
    }
    return page(request, "jobs.html", context)


@router.get(V + "/jobs/{job_id}")
def job_page(
    request: Request, sub: str, rg: str, vault: str, job_id: str, session: Current
) -> Response:
    v = session.svc.get_vault(sub, rg, vault)
    session.require("GET", f"{v.arm_id}/backupJobs/{job_id}")
    view = session.svc.get_job(sub, rg, vault, job_id)
    now = session.svc.ctx.clock.now()
    context = {
        "session": session,
        "crumbs": [
            *vault_crumbs(sub, rg, vault),
            ("Backup jobs", "/jobs"),
            (job_id[:8], views.job_url(view)),
        ],
        "view": view,
        "p": views.progress(view.job, now),
        "views": views,
    }
    return page(request, "job.html", context)


# -- resources --------------------------------------------------------------------------------


@router.get("/resources")
def resources(request: Request, session: Current) -> Response:
    """Servers, key vaults (secret names only, never values) and storage accounts."""
    svc: Service = session.svc
    found: dict[str, list[Any]] = {"servers": [], "keyvaults": [], "accounts": []}
    for s in svc.list_subscriptions():
        found["servers"] += [
            x for x in svc.list_servers(s.id, None) if session.can("GET", x.arm_id)
        ]
        for kv in svc.list_keyvaults(s.id, None):
            if session.can("GET", kv.arm_id):
                _, secrets = svc.list_secrets(kv.subscription_id, kv.resource_group, kv.name)
                found["keyvaults"].append((kv, [x.name for x in secrets]))
        for a in svc.list_storage_accounts(s.id, None):
            if session.can("GET", a.arm_id):
                _, cs = svc.list_containers(a.subscription_id, a.resource_group, a.name)
                found["accounts"].append((a, [c.name for c in cs]))
    context = {
        "session": session,
        "crumbs": crumbs(("Resources", "/resources")),
        **found,
        "base": base_url(request),
        "arm": arm,
        "subscriptions": svc.list_subscriptions(),
    }
    return page(request, "resources.html", context)
