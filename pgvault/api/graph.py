"""Microsoft Graph, as far as `az role assignment create/list` resolves an assignee.

az turns `--assignee` into an object id and a principal type through Graph
(`servicePrincipals?$filter=servicePrincipalNames/any(...)`, `users?$filter=
userPrincipalName eq '...'`, `directoryObjects/getByIds`). pgvault's principals answer:
users as users, service principals and vaults' managed identities as service principals (as
Entra ID lists a managed identity). Any signed-in principal may read the directory, as in a
default Entra tenant; ids, names and types only, never secrets.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import Field

from pgvault.api.deps import SignedIn, Svc, json_response
from pgvault.errors import NotFound
from pgvault.identity import USER, Principal, azure_principal_type
from pgvault.schemas.base import AzureModel

router = APIRouter()
GRAPH = "/v1.0"


class ByIdsBody(AzureModel):
    ids: list[str] = Field(default_factory=list, max_length=1000)
    types: list[str] | None = None


def _object(p: Principal) -> dict[str, Any]:
    if p.type == USER:
        return {
            "@odata.type": "#microsoft.graph.user",
            "id": p.id,
            "displayName": p.name,
            "userPrincipalName": p.name,
        }
    names = [n for n in (p.client_id, p.name) if n]
    return {
        "@odata.type": "#microsoft.graph.servicePrincipal",
        "id": p.id,
        "appId": p.client_id or p.id,
        "displayName": p.name,
        "servicePrincipalNames": names,
        "servicePrincipalType": "ManagedIdentity"
        if azure_principal_type(p.type) != p.type
        else "Application",
    }


def _one(svc: Svc, ref: str) -> Principal | None:
    try:
        return svc.access.get_principal(ref)
    except NotFound:
        return None


def _quoted(filter_: str | None) -> str | None:
    match = re.search(r"eq\s+'([^']*)'", filter_ or "")
    return match.group(1) if match else None


@router.get(GRAPH + "/servicePrincipals")
def service_principals(
    svc: Svc, _: SignedIn, filter_: str | None = Query(default=None, alias="$filter")
) -> JSONResponse:
    name = _quoted(filter_)
    found = _one(svc, name) if name else None
    ok = found is not None and found.type != USER
    return json_response({"value": [_object(found)] if ok and found else []})


@router.get(GRAPH + "/users")
def users(
    svc: Svc, _: SignedIn, filter_: str | None = Query(default=None, alias="$filter")
) -> JSONResponse:
    name = _quoted(filter_)
    found = _one(svc, name) if name else None
    return json_response({"value": [_object(found)] if found and found.type == USER else []})


@router.get(GRAPH + "/me")
def me(svc: Svc, who: SignedIn) -> JSONResponse:
    return json_response(_object(svc.access.get_principal(who.principal_id)))


@router.post(GRAPH + "/directoryObjects/getByIds")
def by_ids(svc: Svc, _: SignedIn, body: ByIdsBody) -> JSONResponse:
    found = [p for p in (_one(svc, i) for i in body.ids) if p is not None and p.id in body.ids]
    return json_response({"value": [_object(p) for p in found]})
