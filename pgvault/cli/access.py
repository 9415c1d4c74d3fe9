"""Identity and access: principals, signing in and out, roles and assignments, the audit log."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pgvault.cli.client import ApiError
from pgvault.cli.common import OutputOpt, SubOpt, client, read_secret, run
from pgvault.cli.output import Output, out, show

principal_app = typer.Typer(no_args_is_help=True, help="Users and service principals.")
role_app = typer.Typer(no_args_is_help=True, help="Roles and role assignments (RBAC).")
role_def_app = typer.Typer(no_args_is_help=True, help="Role definitions.")
role_asg_app = typer.Typer(no_args_is_help=True, help="Role assignments at scopes.")
audit_app = typer.Typer(no_args_is_help=True, help="The audit log.")

PRINCIPAL_COLUMNS = [
    ("Name", "name"),
    ("Type", "properties.principalType"),
    ("Principal id", "properties.principalId"),
    ("Client id", "properties.clientId"),
]


@principal_app.command("create")
def principal_create(
    name: Annotated[str, typer.Option("--name", "-n")],
    type_: Annotated[str, typer.Option("--type", help="user or service-principal")] = "user",
    output: OutputOpt = Output.table,
) -> None:
    """Create a user or service principal; its password / client secret is printed once."""
    c = client()
    data = run(
        lambda: c.put(f"/pgvault/principals/{name}", {"properties": {"principalType": type_}})
    )
    props = data["properties"]
    result = {"principalId": props["principalId"], "secret": props.get("secret")}
    if props.get("clientId"):
        result["clientId"] = props["clientId"]
    if output == Output.json:
        show(result, output)
        return
    show(data, output, PRINCIPAL_COLUMNS)
    label = "Client secret" if props.get("clientId") else "Password"
    out.print(f"[bold]{label} (shown once):[/bold] {props.get('secret')}")


@principal_app.command("list")
def principal_list(output: OutputOpt = Output.table) -> None:
    """List principals (users, service principals, vault identities)."""
    c = client()
    show(run(lambda: c.get("/pgvault/principals")), output, PRINCIPAL_COLUMNS)


@principal_app.command("delete")
def principal_delete(name: Annotated[str, typer.Option("--name", "-n")]) -> None:
    """Delete a principal and its role assignments."""
    c = client()
    run(lambda: c.delete(f"/pgvault/principals/{name}"))
    out.print(f"Deleted principal {name}.")


def login(
    username: Annotated[str | None, typer.Option(help="User name (password prompted).")] = None,
    client_id: Annotated[
        str | None, typer.Option(help="Service principal (secret on stdin).")
    ] = None,
) -> None:
    """Sign in as a user or a service principal; later commands use that identity."""
    c = client()
    if client_id:
        secret = read_secret("Client secret")
        token = run(lambda: c.fetch_token(client_id, secret))
        who = client_id
    else:
        user = username or typer.prompt("User name")
        password = read_secret("Password")
        token = run(lambda: c.fetch_user_token(user, password))
        who = user
    c.remember(token)
    out.print(f"Signed in as {who}.")


def logout() -> None:
    """Revoke the current token and forget it."""
    c = client()
    run(lambda: c.post("/oauth2/revoke"))
    c.forget()
    out.print("Signed out.")


ROLE_COLUMNS = [("Role", "properties.roleName"), ("Type", "properties.type"), ("Id", "name")]
ASSIGNMENT_COLUMNS = [
    ("Id", "id"),
    ("Role", "properties.roleDefinitionName"),
    ("Principal", "properties.principalId"),
    ("Scope", "properties.scope"),
]


@role_def_app.command("list")
def role_definition_list(output: OutputOpt = Output.table) -> None:
    """List role definitions (built-in and custom) with their actions."""
    c = client()
    show(
        run(lambda: c.get("/providers/Microsoft.Authorization/roleDefinitions")),
        output,
        ROLE_COLUMNS,
    )


def _authz_path(scope: str) -> str:
    scope = "/" + scope.strip().strip("/") if scope.strip("/") else ""
    return f"{scope}/providers/Microsoft.Authorization"


@role_asg_app.command("create")
def role_assignment_create(
    assignee: Annotated[str, typer.Option(help="Principal name, id, client id or vault:NAME.")],
    role: Annotated[str, typer.Option(help='Role name, e.g. "Backup Operator".')],
    scope: Annotated[str, typer.Option(help="Resource id (or / for everything).")],
    output: OutputOpt = Output.table,
) -> None:
    """Give a principal a role at a scope (inherited by everything below it)."""
    import uuid

    c = client()
    body = {"properties": {"roleDefinitionId": role, "principalId": assignee}}
    data = run(lambda: c.put(f"{_authz_path(scope)}/roleAssignments/{uuid.uuid4()}", body))
    show(data, output, ASSIGNMENT_COLUMNS)


@role_asg_app.command("list")
def role_assignment_list(
    scope: Annotated[str, typer.Option(help="Resource id; default: all.")] = "/",
    assignee: Annotated[str | None, typer.Option(help="Only this principal.")] = None,
    output: OutputOpt = Output.table,
) -> None:
    """List role assignments that apply at or below a scope."""
    c = client()
    params = {"$filter": f"assignedTo('{assignee}')"} if assignee else {}
    show(
        run(lambda: c.get(f"{_authz_path(scope)}/roleAssignments", **params)),
        output,
        ASSIGNMENT_COLUMNS,
    )


@role_asg_app.command("delete")
def role_assignment_delete(
    id_: Annotated[str | None, typer.Option("--id", help="Assignment id (name).")] = None,
    assignee: Annotated[str | None, typer.Option(help="With --role and --scope.")] = None,
    role: Annotated[str | None, typer.Option()] = None,
    scope: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Delete an assignment by id, or by assignee + role + scope."""
    c = client()

    def body() -> int:
        if id_:
            # a full assignment id deletes at its own scope; a bare name at the root
            path = (
                id_ if "/" in id_ else f"/providers/Microsoft.Authorization/roleAssignments/{id_}"
            )
            c.delete(path)
            return 1
        if not (assignee and role and scope):
            raise ApiError("BadParameter", "Give --id, or --assignee, --role and --scope.")
        found = c.get(
            f"{_authz_path(scope)}/roleAssignments",
            **{"$filter": f"assignedTo('{assignee}') and atScope()"},
        )["value"]
        matches = [
            a for a in found if a["properties"]["roleDefinitionName"].lower() == role.lower()
        ]
        for a in matches:
            c.delete(f"{_authz_path(a['properties']['scope'])}/roleAssignments/{a['name']}")
        return len(matches)

    count = run(body)
    out.print(f"Deleted {count} role assignment(s).")


@audit_app.command("list")
def audit_list(
    since: Annotated[str | None, typer.Option(help="ISO time, e.g. 2026-11-25T00:00:00Z")] = None,
    outcome: Annotated[str | None, typer.Option(help="Succeeded, Failed or Denied")] = None,
    top: Annotated[int, typer.Option(help="At most this many events.")] = 100,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
) -> None:
    """Writes and denied calls: who, what, where, when, outcome."""
    c = client()
    parts = []
    if since:
        parts.append(f"eventTimestamp ge '{since}'")
    if outcome:
        parts.append(f"status eq '{outcome}'")
    params: dict[str, Any] = {"$top": top}
    if parts:
        params["$filter"] = " and ".join(parts)
    path = (
        f"/subscriptions/{subscription or c.default_subscription()}"
        "/providers/Microsoft.Insights/eventtypes/management/values"
    )
    show(
        run(lambda: c.get(path, **params)),
        output,
        [
            ("Time", "eventTimestamp"),
            ("Caller", "caller"),
            ("Action", "authorization.action"),
            ("Scope", "authorization.scope"),
            ("Outcome", "status.value"),
            ("HTTP", "subStatus.value"),
        ],
    )
