"""Configure protection and backup policies from the portal.

Configure protection: server → database → policy → key-vault secret; *Validate* runs the
API's validateForBackup (the same checks `instance create` runs) and lists each failed check
with its fix (and a Grant button for a missing role of the vault's identity); *Configure
backup* protects the database. Policies: the list with each schedule and retention rule in
words (`retention.describe_policy`, the summary the CLI prints), and a create form built with
`retention.build_policy` (the CLI's options), previewed in words before it is saved.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from pgvault import retention
from pgvault.api.deps import base_url
from pgvault.errors import PgVaultError
from pgvault.instances import InstanceSpec
from pgvault.portal import views
from pgvault.portal.render import page
from pgvault.portal.routes import V, vault_crumbs
from pgvault.portal.session import Session, checked, current, mark_portal
from pgvault.portal.wizard import Failed, failed_checks
from pgvault.secrets import secret_uri

router = APIRouter(dependencies=[Depends(mark_portal)], include_in_schema=False)
Current = Annotated[Session, Depends(current)]
Checked = Annotated[Session, Depends(checked)]


@dataclass
class ProtectForm:
    """The Configure protection choices (strings, as the form sends them)."""

    server: str = ""
    database: str = ""
    policy: str = ""
    secret: str = ""
    name: str = ""

    @classmethod
    def of(cls, data: Any) -> ProtectForm:
        return cls(**{k: str(data.get(k) or "") for k in asdict(cls())})

    def spec(self, vault_arm: str) -> InstanceSpec:
        return InstanceSpec(
            database_id=f"{self.server}/databases/{self.database}",
            policy_id=f"{vault_arm}/backupPolicies/{self.policy}",
            secret_uri=self.secret,
        )

    def instance_name(self) -> str:
        return self.name or f"{self.server.rsplit('/', 1)[-1]}-{self.database}"


def _choices(session: Session, request: Request, sub: str, rg: str, vault: str) -> dict[str, Any]:
    """Servers in the vault's region, the vault's policies, and key-vault secrets (names)."""
    svc = session.svc
    v = svc.get_vault(sub, rg, vault)
    servers, secrets = [], []
    for s in svc.list_subscriptions():
        servers += [
            x
            for x in svc.list_servers(s.id, None)
            if x.location == v.location and session.can("GET", x.arm_id)
        ]
        for kv in svc.list_keyvaults(s.id, None):
            if session.can("GET", kv.arm_id):
                _, rows = svc.list_secrets(kv.subscription_id, kv.resource_group, kv.name)
                base = base_url(request)
                secrets.append(
                    (kv.name, [(r.name, secret_uri(base, kv.name, r.name)) for r in rows])
                )
    _, policies = svc.list_policies(sub, rg, vault)
    return {"vault": v, "servers": servers, "secrets": secrets, "policies": policies}


@router.get(V + "/protect")
def protect_form(
    request: Request, sub: str, rg: str, vault: str, session: Current, validate: str = ""
) -> Response:
    choices = _choices(session, request, sub, rg, vault)
    v = choices["vault"]
    form = ProtectForm.of(request.query_params)
    failed: list[Failed] = []
    passed = False
    if validate and form.server and form.database and form.policy and form.secret:
        try:
            session.require("POST", f"{v.arm_id}/validateForBackup")
            session.svc.validate_for_backup(sub, rg, vault, form.spec(v.arm_id))
            passed = True
        except PgVaultError as exc:
            failed = failed_checks(session, exc)
    context = {
        "session": session,
        "crumbs": [*vault_crumbs(sub, rg, vault), ("Configure protection", request.url.path)],
        "form": form,
        "fields": asdict(form),
        "validated": bool(validate),
        "failed": failed,
        "passed": passed,
        "can_protect": session.can("PUT", f"{v.arm_id}/backupInstances/new"),
        "why_not": session.why_not("PUT", f"{v.arm_id}/backupInstances/new"),
        "here": request.url.path,
        **choices,
    }
    return page(request, "protect.html", context)


@router.post(V + "/protect")
def protect(
    sub: str,
    rg: str,
    vault: str,
    session: Checked,
    server: Annotated[str, Form()],
    database: Annotated[str, Form()],
    policy: Annotated[str, Form()],
    secret: Annotated[str, Form()],
    name: Annotated[str, Form()] = "",
) -> Response:
    v = session.svc.get_vault(sub, rg, vault)
    form = ProtectForm(server, database, policy, secret, name)
    inst = form.instance_name()
    arm_path = f"{v.arm_id}/backupInstances/{inst}"
    session.require("PUT", arm_path)
    view, created = session.svc.put_instance(sub, rg, vault, inst, form.spec(v.arm_id))
    session.audit("PUT", arm_path, 201 if created else 200)
    return RedirectResponse(views.instance_url(view), status_code=303)


# -- policies ---------------------------------------------------------------------------------


@dataclass
class PolicyForm:
    """The CLI's `policy create` options, as the form sends them."""

    name: str = ""
    schedule: str = "weekly"
    days: str = "Sunday"
    time: str = "02:00"
    keep_default: str = "P3M"
    keep_weekly: str = ""
    keep_monthly: str = ""
    archive_after: str = ""
    archive_keep: str = "P3Y"

    @classmethod
    def of(cls, data: Any) -> PolicyForm:
        return cls(**{k: str(data.get(k) or v) for k, v in asdict(cls()).items()})

    def properties(self) -> dict[str, Any]:
        return retention.build_policy(
            schedule=self.schedule,
            days=tuple(d.strip() for d in self.days.split(",") if d.strip()),
            time=self.time,
            keep_default=self.keep_default,
            keep_weekly=self.keep_weekly or None,
            keep_monthly=self.keep_monthly or None,
            archive_after=self.archive_after or None,
            archive_keep=self.archive_keep,
        )


@router.get(V + "/policies")
def policies(request: Request, sub: str, rg: str, vault: str, session: Current) -> Response:
    v = session.svc.get_vault(sub, rg, vault)
    session.require("GET", f"{v.arm_id}/backupPolicies")
    _, items = session.svc.list_policies(sub, rg, vault)
    users: dict[str, list[str]] = {}
    if session.can("GET", f"{v.arm_id}/backupInstances"):
        for i in session.svc.list_instances(sub, rg, vault):
            users.setdefault(i.policy.name, []).append(i.instance.name)
    form = PolicyForm.of(request.query_params)
    preview, problem = "", None
    if request.query_params.get("preview"):
        try:
            preview = retention.describe_policy(form.properties())
        except PgVaultError as exc:
            problem = exc
    context = {
        "session": session,
        "crumbs": [*vault_crumbs(sub, rg, vault), ("Backup policies", request.url.path)],
        "vault": v,
        "policies": [(p, retention.describe_policy(p.properties)) for p in items],
        "users": users,
        "form": form,
        "fields": asdict(form),
        "preview": preview,
        "problem": problem,
        "can_write": session.can("PUT", f"{v.arm_id}/backupPolicies/new"),
        "why_not": session.why_not("PUT", f"{v.arm_id}/backupPolicies/new"),
        "here": request.url.path,
    }
    return page(request, "policies.html", context)


@router.post(V + "/policies")
def create_policy(
    sub: str,
    rg: str,
    vault: str,
    session: Checked,
    name: Annotated[str, Form()],
    schedule: Annotated[str, Form()] = "weekly",
    days: Annotated[str, Form()] = "Sunday",
    time: Annotated[str, Form()] = "02:00",
    keep_default: Annotated[str, Form()] = "P3M",
    keep_weekly: Annotated[str, Form()] = "",
    keep_monthly: Annotated[str, Form()] = "",
    archive_after: Annotated[str, Form()] = "",
    archive_keep: Annotated[str, Form()] = "P3Y",
) -> Response:
    form = PolicyForm(name, schedule, days, time, keep_default, keep_weekly, keep_monthly,
                      archive_after, archive_keep)  # fmt: skip
    v = session.svc.get_vault(sub, rg, vault)
    arm_path = f"{v.arm_id}/backupPolicies/{form.name}"
    session.require("PUT", arm_path)
    session.svc.put_policy(sub, rg, vault, form.name, form.properties())
    session.audit("PUT", arm_path, 200)
    return RedirectResponse(f"{views.vault_url(v)}/policies", status_code=303)
