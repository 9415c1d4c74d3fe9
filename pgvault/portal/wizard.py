"""The restore wizard, tab for tab as Azure's portal walks it.

Basics → Select restore point → Restore parameters → Review + restore. The tabs are GET
forms that carry the choices so far (nothing changes until the final POST). Review runs
the API's validateRestore on the same request body (`RestoreRequestBody`) and lists each
failed check with its fix; a missing role comes with its command and a Grant button for
callers who may assign roles. Restore (POST, CSRF) is enabled only when validation passed.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response

from pgvault import rehydration
from pgvault.api.deps import base_url
from pgvault.errors import BadRequest, Code, PgVaultError
from pgvault.jobkinds.restore import RestoreRequest
from pgvault.jobs import Job
from pgvault.portal import views
from pgvault.portal.render import page
from pgvault.portal.routes import BI, vault_crumbs
from pgvault.portal.session import Session, checked, current, mark_portal
from pgvault.recovery_points import VAULT_STORE
from pgvault.schemas.base import parse
from pgvault.schemas.dataprotection import RestoreRequestBody
from pgvault.secrets import secret_uri
from pgvault.services.crossregion import SecondaryPoint
from pgvault.services.protection import InstanceView
from pgvault.storage.accounts import blob_endpoint

router = APIRouter(dependencies=[Depends(mark_portal)], include_in_schema=False)
TABS = (("basics", "Basics"), ("point", "Select restore point"),
        ("params", "Restore parameters"), ("review", "Review + restore"))  # fmt: skip
POINTS_SHOWN = 100  #: the newest points the Select restore point tab lists
ASSIGNMENTS = "/providers/Microsoft.Authorization/roleAssignments/new"
_GRANT = re.compile(r'--assignee (\S+) --role "([^"]+)" --scope (\S+)')


@dataclass
class Choices:
    """What the user picked so far (all strings, as the form sends them)."""

    point: str = ""
    priority: str = "Standard"
    days: str = "15"
    kind: str = "database"
    server: str = ""
    dbname: str = ""
    secret: str = ""
    account: str = ""
    container: str = ""
    prefix: str = ""
    secondary: str = ""  #: the secondary region of a cross-region restore ("" for a normal one)

    @classmethod
    def of(cls, data: Any) -> Choices:
        return cls(**{k: str(data.get(k) or v) for k, v in asdict(cls()).items()})


@dataclass(frozen=True)
class Failed:
    """A failed check as the review tab shows it, with the grant that fixes it if any."""

    error: PgVaultError
    role: str = ""
    scope: str = ""
    assignee: str = ""
    can_grant: bool = False


def _targets(session: Session, request: Request, view: InstanceView, region: str) -> dict[str, Any]:
    """Servers in `region` (the vault's, or the secondary of a cross-region restore), key-vault
    secrets (names only) and storage accounts in `region` with their containers, across the
    subscriptions the caller can see."""
    svc = session.svc
    base = base_url(request)
    servers, secrets, accounts = [], [], []
    for sub in svc.list_subscriptions():
        servers += [
            s for s in svc.list_servers(sub.id, None)
            if s.location == region and session.can("GET", s.arm_id)
        ]  # fmt: skip
        for kv in svc.list_keyvaults(sub.id, None):
            if session.can("GET", kv.arm_id):
                _, rows = svc.list_secrets(kv.subscription_id, kv.resource_group, kv.name)
                secrets.append(
                    (kv.name, [(r.name, secret_uri(base, kv.name, r.name)) for r in rows])
                )
        for a in svc.list_storage_accounts(sub.id, None):
            if a.location == region and session.can("GET", a.arm_id):
                _, cs = svc.list_containers(a.subscription_id, a.resource_group, a.name)
                accounts.append((a, [c.name for c in cs]))
    return {"servers": servers, "secrets": secrets, "accounts": accounts, "base": base}


def _body(
    c: Choices, view: InstanceView, point_in_vault: bool, targets: dict[str, Any]
) -> RestoreRequestBody:
    """The API's restore request body for these choices (validated by the same model)."""
    location = c.secondary or view.vault.location
    target: dict[str, Any]
    if c.kind == "files":
        account = next((a for a, _ in targets["accounts"] if a.arm_id == c.account), None)
        if account is None or not c.container:
            raise BadRequest(
                "Choose a storage account and a target container.", code=Code.BadParameter
            )
        target = {
            "objectType": "RestoreFilesTargetInfo",
            "recoveryOption": "FailIfExists",
            "restoreLocation": location,
            "targetDetails": {
                "url": blob_endpoint(targets["base"], account.name) + c.container,
                "filePrefix": c.prefix,
                "restoreTargetLocationType": "AzureBlobs",
                "targetResourceArmId": f"{account.arm_id}/blobServices/default/containers/{c.container}",
            },
        }
    else:
        if not (c.server and c.dbname and c.secret):
            raise BadRequest(
                "Choose a target server, a new database name and a key-vault secret.",
                code=Code.BadParameter,
            )
        target = {
            "objectType": "RestoreTargetInfo",
            "recoveryOption": "FailIfExists",
            "restoreLocation": location,
            "datasourceInfo": {"resourceID": f"{c.server}/databases/{c.dbname}"},
            "datasourceSetInfo": {"resourceID": c.server},
            "datasourceAuthCredentials": {
                "secretStoreResource": {"uri": c.secret, "secretStoreType": "AzureKeyVault"}
            },
        }
    body: dict[str, Any] = {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": c.point,
        "sourceDataStoreType": "VaultStore" if point_in_vault else "ArchiveStore",
        "restoreTargetInfo": target,
    }
    if not point_in_vault:
        body["objectType"] = "AzureBackupRestoreWithRehydrationRequest"
        body["rehydrationPriority"] = c.priority
        body["rehydrationRetentionDuration"] = f"P{c.days}D"
    return parse(RestoreRequestBody, body)


def failed_checks(session: Session, exc: PgVaultError) -> list[Failed]:
    """Each failed check; a missing role of the vault's identity with the grant that fixes it."""
    out = []
    for e in list(getattr(exc, "errors", None) or [exc]):
        m = _GRANT.search(e.recommended_action or "")
        if m:
            assignee, role, scope = m.groups()
            can = session.can("PUT", scope + ASSIGNMENTS)
            out.append(Failed(e, role, scope, assignee, can))
        else:
            out.append(Failed(e))
    return out


@dataclass(frozen=True)
class _Cross:
    """A restore to the secondary region: the `locations/{region}/...` calls it is made of,
    authorised at the subscription as the API checks them."""

    region: str
    source_region: str
    base: str

    @classmethod
    def of(cls, session: Session, view: InstanceView, region: str) -> _Cross | None:
        if not region:
            return None
        v = view.vault
        cross = cls(region, v.location, views.loc(v.subscription_id, v.resource_group, region))
        session.require("POST", cross.base + "/fetchSecondaryRecoveryPoints")
        return cross

    @property
    def restore_path(self) -> str:
        return self.base + "/crossRegionRestore"

    def _sub(self) -> str:
        return self.base.split("/")[2]

    def points(self, session: Session, inst_arm: str) -> list[SecondaryPoint]:
        """The instance's points available in the secondary region, newest first."""
        found = session.svc.secondary_points(self._sub(), self.region, self.source_region, inst_arm)
        return sorted(found[1], key=lambda sp: sp.point.created_at, reverse=True)

    def validate(self, session: Session, inst_arm: str, req: RestoreRequest) -> None:
        session.require("POST", self.base + "/validateCrossRegionRestore")
        session.svc.validate_cross_region_restore(
            self._sub(), self.region, self.source_region, inst_arm,
            replace(req, secondary_region=self.region),
        )  # fmt: skip

    def restore(self, session: Session, inst_arm: str, req: RestoreRequest) -> Job:
        return session.svc.cross_region_restore(
            self._sub(), self.region, self.source_region, inst_arm,
            replace(req, secondary_region=self.region),
        )  # fmt: skip


@router.get(BI + "/restore")
def wizard(
    request: Request,
    sub: str,
    rg: str,
    vault: str,
    bi: str,
    session: Annotated[Session, Depends(current)],
    tab: str = "basics",
    page_no: Annotated[int, Query(alias="page", ge=0, le=1_000_000)] = 0,
    top: Annotated[int, Query(ge=1, le=POINTS_SHOWN)] = POINTS_SHOWN,
) -> Response:
    """A tab of the wizard. Select restore point pages through every point (`page`, `top`
    points a page, newest first); the latest is preselected whichever page is shown."""
    view = session.svc.get_instance(sub, rg, vault, bi)
    inst_arm = views.instance_arm(view)
    session.require("GET", inst_arm)
    c = Choices.of(request.query_params)
    cross = _Cross.of(session, view, c.secondary)
    if cross:
        secondary = cross.points(session, inst_arm)
        points = [sp.point for sp in secondary]
        replicas_in_vault = {sp.point.id: sp.replica.tier == VAULT_STORE for sp in secondary}
    more = False
    if cross:
        shown = points
    else:
        _, shown = session.svc.list_points(sub, rg, vault, bi, limit=top + 1, offset=page_no * top)
        more, points = len(shown) > top, shown[:top]
        if not c.point and page_no:
            shown = session.svc.list_points(sub, rg, vault, bi, limit=1)[1]
    if not c.point and shown:
        c.point = shown[0].id  # the latest is preselected
    chosen = next((p for p in points if p.id == c.point), None)
    if chosen is None and c.point and not cross:  # on another page, chosen by id
        chosen = session.svc.get_point(sub, rg, vault, bi, c.point)[1]
    in_vault = chosen.in_vault if chosen else True
    if cross and chosen:
        in_vault = replicas_in_vault[chosen.id]
    problems: list[PgVaultError] = []
    failed: list[Failed] = []
    passed = False
    targets = _targets(session, request, view, c.secondary or view.vault.location)
    tab = tab if tab in dict(TABS) else "basics"
    if tab != "basics" and tab != "point" and not in_vault:
        try:
            rehydration.duration_days(f"P{c.days}D")
            rehydration.check_priority(c.priority)
        except PgVaultError as exc:
            problems.append(exc)
            tab = "point"
    if tab == "review":
        try:
            req = _body(c, view, in_vault, targets).to_request()
            if cross:
                cross.validate(session, inst_arm, req)
            else:
                session.require("POST", inst_arm + "/validateRestore")
                session.svc.validate_restore(sub, rg, vault, bi, req)
            passed = True
        except PgVaultError as exc:
            failed = failed_checks(session, exc)
    context = {
        "session": session,
        "crumbs": [*vault_crumbs(sub, rg, vault), (bi, views.instance_url(view)),
                   ("Restore", views.instance_url(view) + "/restore")],
        "view": view,
        "tabs": TABS,
        "tab": tab,
        "c": c,
        "choices": asdict(c),
        "points": points,
        "points_total": (
            len(points) if cross else
            session.svc.count_points(sub, rg, vault, bi) if tab == "point" else 0
        ),
        "cross": cross,
        "target_region": c.secondary or view.vault.location,
        "page_no": page_no,
        "top": top,
        "more": more,
        "chosen": chosen,
        "archive": not in_vault,
        "problems": problems,
        "failed": failed,
        "passed": passed,
        "can_restore": session.can("POST", cross.restore_path if cross else inst_arm + "/restore"),
        "why_not": session.why_not("POST", cross.restore_path if cross else inst_arm + "/restore"),
        "views": views,
        "here": views.instance_url(view) + "/restore",
        **targets,
    }  # fmt: skip
    return page(request, "wizard.html", context)


@router.post(BI + "/restore")
def submit(
    request: Request,
    sub: str,
    rg: str,
    vault: str,
    bi: str,
    session: Annotated[Session, Depends(checked)],
    point: Annotated[str, Form()] = "",
    kind: Annotated[str, Form()] = "database",
    priority: Annotated[str, Form()] = "Standard",
    days: Annotated[str, Form()] = "15",
    server: Annotated[str, Form()] = "",
    dbname: Annotated[str, Form()] = "",
    secret: Annotated[str, Form()] = "",
    account: Annotated[str, Form()] = "",
    container: Annotated[str, Form()] = "",
    prefix: Annotated[str, Form()] = "",
    secondary: Annotated[str, Form()] = "",
) -> Response:
    view = session.svc.get_instance(sub, rg, vault, bi)
    inst_arm = views.instance_arm(view)
    c = Choices(point, priority, days, kind, server, dbname, secret, account, container, prefix,
                secondary)  # fmt: skip
    targets = _targets(session, request, view, secondary or view.vault.location)
    cross = _Cross.of(session, view, secondary)
    if cross:
        session.require("POST", cross.restore_path)
        sp = next((p for p in cross.points(session, inst_arm) if p.point.id == point), None)
        if sp is None:
            raise BadRequest(
                f"Recovery point {point!r} has not been replicated to {secondary}: choose one "
                "the Select restore point tab lists.",
                code=Code.BadParameter,
            )
        req = _body(c, view, sp.replica.tier == VAULT_STORE, targets).to_request()
        job = cross.restore(session, inst_arm, req)
        session.audit("POST", cross.restore_path, 202)
    else:
        session.require("POST", inst_arm + "/restore")
        _, rp = session.svc.get_point(sub, rg, vault, bi, point)
        req = _body(c, view, rp.in_vault, targets).to_request()
        job = session.svc.trigger_restore(sub, rg, vault, bi, req)
        session.audit("POST", inst_arm + "/restore", 202)
    job_view = session.svc.get_job(sub, rg, vault, job.id)
    context = {
        "session": session,
        "crumbs": [*vault_crumbs(sub, rg, vault), (bi, views.instance_url(view))],
        "view": view,
        "job": job_view,
        "views": views,
    }
    return page(request, "submitted.html", context, status=200)
