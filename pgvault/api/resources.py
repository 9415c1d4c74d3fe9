"""ARM resources around the vault: subscriptions, resource groups, servers, key vaults, storage."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse, Response

from pgvault import jsonbody as b
from pgvault.api import shapes
from pgvault.api.deps import Auth, Svc, json_response, public_url
from pgvault.errors import BadRequest, Code

router = APIRouter()
RG = "/subscriptions/{sub}/resourceGroups/{rg}"
P = RG + "/providers"
JSON = Body(default=None)


@router.get("/subscriptions")
def list_subscriptions(svc: Svc, _: Auth) -> JSONResponse:
    return json_response(shapes.page([shapes.subscription(s) for s in svc.list_subscriptions()]))


@router.put(RG)
def put_group(sub: str, rg: str, svc: Svc, _: Auth, body: Any = JSON) -> JSONResponse:
    location = b.get(body, "location") or "eastus"
    return json_response(shapes.group(svc.put_group(sub, rg, location)))


@router.get(RG)
def get_group(sub: str, rg: str, svc: Svc, _: Auth) -> JSONResponse:
    return json_response(shapes.group(svc.get_group(sub, rg)))


# -- PostgreSQL servers ---------------------------------------------------------------------

SERVERS = P + "/Microsoft.DBforPostgreSQL/servers"


@router.put(SERVERS + "/{name}")
def put_server(sub: str, rg: str, name: str, svc: Svc, _: Auth, body: Any = JSON) -> JSONResponse:
    props = b.as_dict(b.get(body, "properties"), "properties")
    host = b.get(props, "fullyQualifiedDomainName") or b.get(props, "host")
    port = b.get(props, "port", default=5432)
    if not isinstance(host, str):
        raise BadRequest(
            "properties.fullyQualifiedDomainName (the host) is required.",
            code=Code.InvalidRequestContent,
        )
    if not isinstance(port, int) or isinstance(port, bool):
        raise BadRequest("properties.port must be an integer.", code=Code.InvalidRequestContent)
    location = b.require(body, "location")
    return json_response(shapes.server(svc.put_server(sub, rg, name, host, port, location)))


@router.get(SERVERS + "/{name}")
def get_server(sub: str, rg: str, name: str, svc: Svc, _: Auth) -> JSONResponse:
    return json_response(shapes.server(svc.get_server(sub, rg, name)))


@router.get(SERVERS)
def list_servers(sub: str, rg: str, svc: Svc, _: Auth) -> JSONResponse:
    return json_response(shapes.page([shapes.server(s) for s in svc.list_servers(sub, rg)]))


@router.delete(SERVERS + "/{name}")
def delete_server(sub: str, rg: str, name: str, svc: Svc, _: Auth) -> Response:
    svc.delete_server(sub, rg, name)
    return Response(status_code=200)


# -- key vaults and secrets -----------------------------------------------------------------

KV = P + "/Microsoft.KeyVault/vaults"


@router.put(KV + "/{name}")
def put_keyvault(
    request: Request, sub: str, rg: str, name: str, svc: Svc, _: Auth, body: Any = JSON
) -> JSONResponse:
    kv = svc.put_keyvault(sub, rg, name, b.require(body, "location"))
    return json_response(shapes.keyvault(kv, public_url(request, svc)))


@router.get(KV + "/{name}")
def get_keyvault(request: Request, sub: str, rg: str, name: str, svc: Svc, _: Auth) -> JSONResponse:
    return json_response(shapes.keyvault(svc.get_keyvault(sub, rg, name), public_url(request, svc)))


@router.get(KV)
def list_keyvaults(request: Request, sub: str, rg: str, svc: Svc, _: Auth) -> JSONResponse:
    url = public_url(request, svc)
    return json_response(
        shapes.page([shapes.keyvault(k, url) for k in svc.list_keyvaults(sub, rg)])
    )


@router.delete(KV + "/{name}")
def delete_keyvault(sub: str, rg: str, name: str, svc: Svc, _: Auth) -> Response:
    svc.delete_keyvault(sub, rg, name)
    return Response(status_code=200)


@router.put(KV + "/{kv}/secrets/{name}")
def put_secret(
    request: Request, sub: str, rg: str, kv: str, name: str, svc: Svc, _: Auth, body: Any = JSON
) -> JSONResponse:
    value = b.require(body, "properties", "value")
    content_type = b.get(body, "properties", "contentType")
    vault, row = svc.put_secret(
        sub, rg, kv, name, value, content_type if isinstance(content_type, str) else None
    )
    return json_response(shapes.secret(vault, row, public_url(request, svc)))


@router.get(KV + "/{kv}/secrets/{name}")
def get_secret(
    request: Request, sub: str, rg: str, kv: str, name: str, svc: Svc, _: Auth
) -> JSONResponse:
    vault, row = svc.get_secret(sub, rg, kv, name)
    return json_response(shapes.secret(vault, row, public_url(request, svc)))


@router.get(KV + "/{kv}/secrets")
def list_secrets(request: Request, sub: str, rg: str, kv: str, svc: Svc, _: Auth) -> JSONResponse:
    vault, rows = svc.list_secrets(sub, rg, kv)
    url = public_url(request, svc)
    return json_response(shapes.page([shapes.secret(vault, r, url) for r in rows]))


# -- storage accounts and containers --------------------------------------------------------

SA = P + "/Microsoft.Storage/storageAccounts"
CONTAINERS = SA + "/{account}/blobServices/default/containers"


@router.put(SA + "/{name}")
def put_storage_account(
    request: Request, sub: str, rg: str, name: str, svc: Svc, _: Auth, body: Any = JSON
) -> JSONResponse:
    backend = b.as_dict(b.get(body, "properties", "backend"), "properties.backend")
    kind = b.get(backend, "type") or "local"
    account = svc.put_storage_account(
        sub,
        rg,
        name,
        b.require(body, "location"),
        kind,
        {k: v for k, v in backend.items() if k.lower() != "type"},
    )
    return json_response(shapes.storage_account(account, public_url(request, svc)))


@router.get(SA + "/{name}")
def get_storage_account(
    request: Request, sub: str, rg: str, name: str, svc: Svc, _: Auth
) -> JSONResponse:
    account = svc.get_storage_account(sub, rg, name)
    return json_response(shapes.storage_account(account, public_url(request, svc)))


@router.get(SA)
def list_storage_accounts(request: Request, sub: str, rg: str, svc: Svc, _: Auth) -> JSONResponse:
    url = public_url(request, svc)
    items = [shapes.storage_account(a, url) for a in svc.list_storage_accounts(sub, rg)]
    return json_response(shapes.page(items))


@router.put(CONTAINERS + "/{name}")
def put_container(
    request: Request,
    sub: str,
    rg: str,
    account: str,
    name: str,
    svc: Svc,
    _: Auth,
    body: Any = JSON,
) -> JSONResponse:
    acct, row = svc.put_container(sub, rg, account, name)
    return json_response(shapes.container(acct, row, public_url(request, svc)))


@router.get(CONTAINERS + "/{name}")
def get_container(
    request: Request, sub: str, rg: str, account: str, name: str, svc: Svc, _: Auth
) -> JSONResponse:
    acct, row = svc.get_container(sub, rg, account, name)
    return json_response(shapes.container(acct, row, public_url(request, svc)))


@router.get(CONTAINERS)
def list_containers(
    request: Request, sub: str, rg: str, account: str, svc: Svc, _: Auth
) -> JSONResponse:
    acct, rows = svc.list_containers(sub, rg, account)
    url = public_url(request, svc)
    return json_response(shapes.page([shapes.container(acct, r, url) for r in rows]))
