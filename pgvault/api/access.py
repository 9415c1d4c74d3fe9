"""Identity and access endpoints: OAuth2 tokens, principals, RBAC (Azure's Authorization shape), audit."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import JSONResponse, Response

from pgvault import rbac
from pgvault.api import limits
from pgvault.api.deps import Auth, Svc, bearer, json_response
from pgvault.audit import AuditEvent
from pgvault.clock import iso
from pgvault.errors import BadRequest, Code, NotFound
from pgvault.identity import Principal, azure_principal_type
from pgvault.schemas.access import PrincipalBody, RoleAssignmentBody, RoleDefinitionBody
from pgvault.services import Service

router = APIRouter()
AUTHZ = "/providers/Microsoft.Authorization"


# -- OAuth2 ---------------------------------------------------------------------------------


def _rate_limited(request: Request, svc: Service, name: str | None) -> None:
    """Per client address, then per user name / client id: 429 with Retry-After past the
    limit (PGVAULT_TOKEN_RATE_PER_ADDRESS / _PER_NAME per PGVAULT_TOKEN_RATE_WINDOW_SECONDS)."""
    address = limits.client_address(request.scope, svc.ctx.settings.trusted_proxies)
    request.app.state.token_rate_by_address.hit(address, f"address {address}")
    if name:
        request.app.state.token_rate_by_name.hit(name[:200], repr(name[:200]))


@router.post("/oauth2/token")
def token(
    request: Request,
    svc: Svc,
    grant_type: str = Form(...),
    client_id: str | None = Form(default=None),
    client_secret: str | None = Form(default=None),
    username: str | None = Form(default=None),
    password: str | None = Form(default=None),
    scope: str | None = Form(default=None),
) -> JSONResponse:
    """client_credentials (service principals) or password (users)."""
    _rate_limited(request, svc, username if grant_type == "password" else client_id)
    if grant_type == "client_credentials" and client_id and client_secret is not None:
        access, lifetime = svc.access.token_for_client(client_id, client_secret)
    elif grant_type == "password" and username and password is not None:
        access, lifetime = svc.access.token_for_user(username, password)
    else:
        raise BadRequest(
            "Use grant_type=client_credentials with client_id and client_secret, or "
            "grant_type=password with username and password.",
            code=Code.invalid_request
            if grant_type in ("client_credentials", "password")
            else Code.unsupported_grant_type,
        )
    return JSONResponse({"access_token": access, "token_type": "Bearer", "expires_in": lifetime})


@router.post("/oauth2/revoke")
def revoke(request: Request, svc: Svc, token: str | None = Form(default=None)) -> Response:
    """Revoke a token (the form's `token`, else the bearer token of the call itself)."""
    svc.access.revoke(token or bearer(request))
    return Response(status_code=200)


# -- principals -----------------------------------------------------------------------------


def _principal(p: Principal, secret: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"/pgvault/principals/{p.name}",
        "name": p.name,
        "type": "pgvault/principals",
        "properties": {
            "principalId": p.id,
            "principalType": p.type,
            "clientId": p.client_id,
            "enabled": p.enabled,
            "createdOn": iso(p.created_at),
        },
    }
    if secret is not None:
        body["properties"]["secret"] = secret  # shown once, at creation
    return body


@router.put("/pgvault/principals/{name}")
def create_principal(
    name: str, svc: Svc, _: Auth, body: PrincipalBody | None = None
) -> JSONResponse:
    principal, secret = svc.access.create_principal(name, (body or PrincipalBody()).kind)
    return json_response(_principal(principal, secret), 201)


@router.get("/pgvault/principals")
def list_principals(svc: Svc, _: Auth) -> JSONResponse:
    return json_response({"value": [_principal(p) for p in svc.access.list_principals()]})


@router.get("/pgvault/principals/{name}")
def get_principal(name: str, svc: Svc, _: Auth) -> JSONResponse:
    return json_response(_principal(svc.access.get_principal(name)))


@router.delete("/pgvault/principals/{name}")
def delete_principal(name: str, svc: Svc, _: Auth) -> Response:
    svc.access.delete_principal(name)
    return Response(status_code=200)


# -- role definitions -----------------------------------------------------------------------


def _scope(scope: str) -> str:
    return rbac.normalize_scope(scope)


def _definition_id(scope: str, role: rbac.Role) -> str:
    prefix = "" if _scope(scope) == "/" else _scope(scope)
    return f"{prefix}{AUTHZ}/roleDefinitions/{role.id}"


def _definition(scope: str, role: rbac.Role) -> dict[str, Any]:
    return {
        "id": _definition_id(scope, role),
        "name": role.id,
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {
            "roleName": role.name,
            "description": role.description,
            "type": "BuiltInRole" if role.builtin else "CustomRole",
            "permissions": [
                {
                    "actions": list(role.actions),
                    "notActions": list(role.not_actions),
                    "dataActions": list(role.data_actions),
                    "notDataActions": [],
                }
            ],
            "assignableScopes": list(role.assignable_scopes),
        },
    }


def _list_definitions(scope: str, svc: Svc, filter_: str | None) -> JSONResponse:
    roles = svc.access.roles()
    match = re.search(r"roleName\s+eq\s+'([^']*)'", filter_ or "", re.IGNORECASE)
    if match:
        roles = [r for r in roles if r.name.lower() == match.group(1).lower()]
    return json_response({"value": [_definition(scope, r) for r in roles]})


@router.get(AUTHZ + "/roleDefinitions")
def list_definitions_root(
    svc: Svc, _: Auth, filter_: str | None = Query(default=None, alias="$filter")
) -> JSONResponse:
    return _list_definitions("/", svc, filter_)


@router.get("/{scope:path}" + AUTHZ + "/roleDefinitions")
def list_definitions(
    scope: str, svc: Svc, _: Auth, filter_: str | None = Query(default=None, alias="$filter")
) -> JSONResponse:
    return _list_definitions(scope, svc, filter_)


@router.get(AUTHZ + "/roleDefinitions/{role_id}")
def get_definition_root(role_id: str, svc: Svc, _: Auth) -> JSONResponse:
    return json_response(_definition("/", svc.access.role(role_id)))


@router.get("/{scope:path}" + AUTHZ + "/roleDefinitions/{role_id}")
def get_definition(scope: str, role_id: str, svc: Svc, _: Auth) -> JSONResponse:
    return json_response(_definition(scope, svc.access.role(role_id)))


def _custom_role_id(role_id: str, svc: Svc, caller: Auth) -> str:
    """The role's GUID, once the caller may define roles (checked before the body is read).

    A custom role is one definition for every scope (assignableScopes is ["/"]): changing it
    changes what every assignment of it grants, so it takes the right at the root.
    """
    svc.access.authorize(caller, "Microsoft.Authorization/roleDefinitions/write", "/")
    try:
        return str(uuid.UUID(role_id))
    except ValueError:
        raise BadRequest(
            "A role definition's name must be a GUID.", code=Code.InvalidRoleDefinitionId
        ) from None


@router.put("/{scope:path}" + AUTHZ + "/roleDefinitions/{role_id}")
def put_definition(
    scope: str,
    role_guid: Annotated[str, Depends(_custom_role_id)],
    svc: Svc,
    body: RoleDefinitionBody,
) -> JSONResponse:
    props = body.properties
    role = svc.access.put_custom_role(
        role_guid, props.role_name, props.description or "", props.granted()
    )
    return json_response(_definition(scope, role), 201)


# -- role assignments -----------------------------------------------------------------------


def _assignment(a: rbac.Assignment, svc: Svc) -> dict[str, Any]:
    prefix = "" if a.scope == "/" else a.scope
    return {
        "id": f"{prefix}{AUTHZ}/roleAssignments/{a.id}",
        "name": a.id,
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "scope": a.scope,
            "roleDefinitionId": f"{prefix}{AUTHZ}/roleDefinitions/{a.role_id}",
            "roleDefinitionName": svc.access.role(a.role_id).name,
            "principalId": a.principal_id,
            "principalType": azure_principal_type(a.principal_type),
            "createdOn": iso(a.created_at),
            "createdBy": a.created_by,
        },
    }


def _put_assignment(
    scope: str, name: str, request: Request, svc: Svc, body: RoleAssignmentBody
) -> JSONResponse:
    props = body.properties
    try:
        uuid.UUID(name)
    except ValueError:
        raise BadRequest(
            "A role assignment's name must be a GUID.", code=Code.InvalidRoleAssignmentId
        ) from None
    existed = svc.access.assignment_exists(name)
    row = svc.access.create_assignment(
        request.state.caller,
        _scope(scope),
        props.role_definition_id,
        props.principal_id,
        assignment_id=name,
    )
    return json_response(_assignment(row, svc), 200 if existed else 201)


def _filter(filter_: str | None) -> tuple[str | None, bool]:
    """(principal, at scope only) from `$filter=atScope()`, `principalId eq 'x'`, `assignedTo('x')`."""
    text = filter_ or ""
    match = re.search(r"(?:principalId\s+eq\s+|assignedTo\()'([^']+)'", text, re.IGNORECASE)
    return (match.group(1) if match else None), "atscope()" in text.lower()


def _list_assignments(scope: str, svc: Svc, filter_: str | None) -> JSONResponse:
    principal, at_scope = _filter(filter_)
    rows = svc.access.list_assignments(_scope(scope), principal, at_scope)
    return json_response({"value": [_assignment(a, svc) for a in rows]})


@router.put(AUTHZ + "/roleAssignments/{name}")
def put_assignment_root(
    name: str, request: Request, svc: Svc, _: Auth, body: RoleAssignmentBody
) -> JSONResponse:
    return _put_assignment("/", name, request, svc, body)


@router.put("/{scope:path}" + AUTHZ + "/roleAssignments/{name}")
def put_assignment(
    scope: str, name: str, request: Request, svc: Svc, _: Auth, body: RoleAssignmentBody
) -> JSONResponse:
    return _put_assignment(scope, name, request, svc, body)


@router.get(AUTHZ + "/roleAssignments")
def list_assignments_root(
    svc: Svc, _: Auth, filter_: str | None = Query(default=None, alias="$filter")
) -> JSONResponse:
    return _list_assignments("/", svc, filter_)


@router.get("/{scope:path}" + AUTHZ + "/roleAssignments")
def list_assignments(
    scope: str, svc: Svc, _: Auth, filter_: str | None = Query(default=None, alias="$filter")
) -> JSONResponse:
    return _list_assignments(scope, svc, filter_)


def _assignment_at(scope: str, name: str, svc: Svc) -> rbac.Assignment:
    """The assignment `name` if it is at or below `scope` (where the caller was authorized).

    An assignment above or beside it (e.g. the admin's Owner assignment at `/`, which a
    resource group's Owner sees in that group's list) is not the caller's to read or delete.
    """
    row = svc.access.get_assignment(name)
    if not rbac.covers(scope, row.scope):
        raise NotFound(f"Role assignment {name!r} not found.", code=Code.RoleAssignmentNotFound)
    return row


@router.get(AUTHZ + "/roleAssignments/{name}")
def get_assignment_root(name: str, svc: Svc, _: Auth) -> JSONResponse:
    return json_response(_assignment(_assignment_at("/", name, svc), svc))


@router.get("/{scope:path}" + AUTHZ + "/roleAssignments/{name}")
def get_assignment(scope: str, name: str, svc: Svc, _: Auth) -> JSONResponse:
    return json_response(_assignment(_assignment_at(scope, name, svc), svc))


@router.delete(AUTHZ + "/roleAssignments/{name}")
def delete_assignment_root(name: str, svc: Svc, _: Auth) -> JSONResponse:
    _assignment_at("/", name, svc)
    return json_response(_assignment(svc.access.delete_assignment(name), svc))


@router.delete("/{scope:path}" + AUTHZ + "/roleAssignments/{name}")
def delete_assignment(scope: str, name: str, svc: Svc, _: Auth) -> JSONResponse:
    _assignment_at(scope, name, svc)
    return json_response(_assignment(svc.access.delete_assignment(name), svc))


# -- audit log (Azure's activity log shape) -------------------------------------------------


def _event(e: AuditEvent) -> dict[str, Any]:
    return {
        "eventDataId": e.id,
        "eventTimestamp": iso(e.at),
        "caller": e.principal_name,
        "claims": {"oid": e.principal_id},
        "authorization": {"action": e.action, "scope": e.scope},
        "operationName": {"value": e.action},
        "resourceId": e.scope,
        "httpRequest": {"method": e.method},
        "status": {"value": e.outcome},
        "subStatus": {"value": str(e.status)},
        "properties": {
            "statusCode": str(e.status),
            "errorCode": e.error_code,
            **({"details": e.details_dict} if e.details else {}),
            "count": str(e.count or 1),
            "lastEventTimestamp": iso(e.last_at or e.at),
        },
    }


@router.get("/subscriptions/{sub}/providers/Microsoft.Insights/eventtypes/management/values")
def audit_log(
    sub: str,
    svc: Svc,
    _: Auth,
    filter_: str | None = Query(default=None, alias="$filter"),
    top: int = Query(default=200, alias="$top", ge=1, le=5000),
) -> JSONResponse:
    """Every write and every denied call; `$filter=eventTimestamp ge '...'` and status."""
    since = None
    match = re.search(r"eventTimestamp\s+ge\s+'([^']+)'", filter_ or "", re.IGNORECASE)
    if match:
        try:
            since = datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest(
                "Invalid eventTimestamp in $filter.", code=Code.InvalidFilter
            ) from None
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
    outcome = re.search(r"status\s+eq\s+'([^']+)'", filter_ or "", re.IGNORECASE)
    events = svc.access.audit_events(None, since, outcome.group(1) if outcome else None, top)
    events = [
        e
        for e in events
        if e.scope == "/"
        or f"/subscriptions/{sub.lower()}" in e.scope.lower()
        or e.scope.lower().startswith(("/pgvault", "/oauth2"))  # sign-ins: failures, lockouts
    ]
    return json_response({"value": [_event(e) for e in events]})
