"""Identity and access: principals, signing in and out, roles and assignments, the audit log."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import typer

from pgvault.cli.client import ApiError
from pgvault.cli.common import Call, NameOpt, Scope, command, read_secret
from pgvault.cli.output import Columns, out

principal_app = typer.Typer(no_args_is_help=True, help="Users and service principals.")
role_app = typer.Typer(no_args_is_help=True, help="Roles and role assignments (RBAC).")
role_def_app = typer.Typer(no_args_is_help=True, help="Role definitions.")
role_asg_app = typer.Typer(no_args_is_help=True, help="Role assignments at scopes.")
audit_app = typer.Typer(no_args_is_help=True, help="The audit log.")

PRINCIPAL_COLUMNS: Columns = (
    ("Name", "name"),
    ("Type", "properties.principalType"),
    ("Principal id", "properties.principalId"),
    ("Client id", "properties.clientId"),
)


@command(principal_app, "create", scope=Scope.none)
def principal_create(
    call: Call,
    name: NameOpt,
    type_: Annotated[str, typer.Option("--type", help="user or service-principal")] = "user",
) -> None:
    """Create a user or service principal; its password / client secret is printed once."""
    data = call.client.put(f"/pgvault/principals/{name}", {"properties": {"principalType": type_}})
    props = data["properties"]
    result = {"principalId": props["principalId"], "secret": props.get("secret")}
    if props.get("clientId"):
        result["clientId"] = props["clientId"]
    if call.machine:
        call.show(result)
        return
    call.show(data, PRINCIPAL_COLUMNS)
    label = "Client secret" if props.get("clientId") else "Password"
    out.print(f"[bold]{label} (shown once):[/bold] {props.get('secret')}")


@command(principal_app, "list", columns=PRINCIPAL_COLUMNS, scope=Scope.none)
def principal_list(call: Call) -> Any:
    """List principals (users, service principals, vault identities)."""
    return call.client.get("/pgvault/principals")


@command(principal_app, "delete", scope=Scope.none, output=False)
def principal_delete(call: Call, name: NameOpt) -> None:
    """Delete a principal and its role assignments."""
    call.client.delete(f"/pgvault/principals/{name}")
    out.print(f"Deleted principal {name}.")


def login(
    call: Call,
    username: Annotated[str | None, typer.Option(help="User name (password prompted).")] = None,
    client_id: Annotated[
        str | None, typer.Option(help="Service principal (secret on stdin).")
    ] = None,
) -> None:
    """Sign in as a user or a service principal; later commands use that identity."""
    c = call.client
    if client_id:
        token = c.fetch_token(client_id, read_secret("Client secret"))
        who = client_id
    else:
        user = username or typer.prompt("User name")
        token = c.fetch_user_token(user, read_secret("Password"))
        who = user
    c.remember(token)
    out.print(f"Signed in as {who}.")


def logout(call: Call) -> None:
    """Revoke the current token and forget it."""
    call.client.post("/oauth2/revoke")
    call.client.forget()
    out.print("Signed out.")


ROLE_COLUMNS: Columns = (
    ("Role", "properties.roleName"),
    ("Type", "properties.type"),
    ("Id", "name"),
)
ASSIGNMENT_COLUMNS: Columns = (
    ("Id", "id"),
    ("Role", "properties.roleDefinitionName"),
    ("Principal", "properties.principalId"),
    ("Scope", "properties.scope"),
)


@command(role_def_app, "list", columns=ROLE_COLUMNS, scope=Scope.none)
def role_definition_list(call: Call) -> Any:
    """List role definitions (built-in and custom) with their actions."""
    return call.client.get("/providers/Microsoft.Authorization/roleDefinitions")


def _authz_path(scope: str) -> str:
    scope = "/" + scope.strip().strip("/") if scope.strip("/") else ""
    return f"{scope}/providers/Microsoft.Authorization"


@command(role_asg_app, "create", columns=ASSIGNMENT_COLUMNS, scope=Scope.none)
def role_assignment_create(
    call: Call,
    assignee: Annotated[str, typer.Option(help="Principal name, id, client id or vault:NAME.")],
    role: Annotated[str, typer.Option(help='Role name, e.g. "Backup Operator".')],
    scope: Annotated[str, typer.Option(help="Resource id (or / for everything).")],
) -> Any:
    """Give a principal a role at a scope (inherited by everything below it)."""
    body = {"properties": {"roleDefinitionId": role, "principalId": assignee}}
    return call.client.put(f"{_authz_path(scope)}/roleAssignments/{uuid.uuid4()}", body)


@command(role_asg_app, "list", columns=ASSIGNMENT_COLUMNS, scope=Scope.none)
def role_assignment_list(
    call: Call,
    scope: Annotated[str, typer.Option(help="Resource id; default: all.")] = "/",
    assignee: Annotated[str | None, typer.Option(help="Only this principal.")] = None,
) -> Any:
    """List role assignments that apply at or below a scope."""
    params = {"$filter": f"assignedTo('{assignee}')"} if assignee else {}
    return call.client.get(f"{_authz_path(scope)}/roleAssignments", **params)


@command(role_asg_app, "delete", scope=Scope.none, output=False)
def role_assignment_delete(
    call: Call,
    id_: Annotated[str | None, typer.Option("--id", help="Assignment id (name).")] = None,
    assignee: Annotated[str | None, typer.Option(help="With --role and --scope.")] = None,
    role: Annotated[str | None, typer.Option()] = None,
    scope: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Delete an assignment by id, or by assignee + role + scope."""
    out.print(
        f"Deleted {_delete_assignments(call, id_, assignee, role, scope)} role assignment(s)."
    )


def _delete_assignments(
    call: Call, id_: str | None, assignee: str | None, role: str | None, scope: str | None
) -> int:
    """Delete one assignment by id, or every one matching assignee + role + scope; the count."""
    c = call.client
    if id_:
        # a full assignment id deletes at its own scope; a bare name at the root
        path = id_ if "/" in id_ else f"/providers/Microsoft.Authorization/roleAssignments/{id_}"
        c.delete(path)
        return 1
    if not (assignee and role and scope):
        raise ApiError("BadParameter", "Give --id, or --assignee, --role and --scope.")
    found = c.get(
        f"{_authz_path(scope)}/roleAssignments",
        **{"$filter": f"assignedTo('{assignee}') and atScope()"},
    )["value"]
    matches = [a for a in found if a["properties"]["roleDefinitionName"].lower() == role.lower()]
    for a in matches:
        c.delete(f"{_authz_path(a['properties']['scope'])}/roleAssignments/{a['name']}")
    return len(matches)


@command(
    audit_app,
    "list",
    columns=(
        ("Time", "eventTimestamp"),
        ("Caller", "caller"),
        ("Action", "authorization.action"),
        ("Scope", "authorization.scope"),
        ("Outcome", "status.value"),
        ("HTTP", "subStatus.value"),
    ),
    scope=Scope.subscription,
)
def audit_list(
    call: Call,
    since: Annotated[str | None, typer.Option(help="ISO time, e.g. 2026-11-25T00:00:00Z")] = None,
    outcome: Annotated[str | None, typer.Option(help="Succeeded, Failed or Denied")] = None,
    top: Annotated[int, typer.Option(help="At most this many events.")] = 100,
) -> Any:
    """Writes and denied calls: who, what, where, when, outcome."""
    parts = []
    if since:
        parts.append(f"eventTimestamp ge '{since}'")
    if outcome:
        parts.append(f"status eq '{outcome}'")
    params: dict[str, Any] = {"$top": top}
    if parts:
        params["$filter"] = " and ".join(parts)
    path = f"{call.subscription_path()}/providers/Microsoft.Insights/eventtypes/management/values"
    return call.client.get(path, **params)
