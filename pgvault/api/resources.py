"""ARM resources around the vault: subscriptions, resource groups, servers, key vaults, storage."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from pgvault.api import shapes
from pgvault.api.deps import Auth, Svc, json_response, keyvault_base, public_url
from pgvault.errors import Code, NotFound
from pgvault.schemas.resources import (
    ContainerBody,
    GroupBody,
    KeyVaultBody,
    SecretBody,
    ServerBody,
    StorageAccountBody,
)

router = APIRouter()
RG = "/subscriptions/{sub}/resourceGroups/{rg}"
P = RG + "/providers"


@router.get("/subscriptions")
def list_subscriptions(svc: Svc, _: Auth) -> JSONResponse:
    tenant = svc.access.tenant_id()
    subs = [shapes.subscription(s, tenant) for s in svc.list_subscriptions()]
    return json_response(shapes.page(subs))


@router.get("/subscriptions/{sub}")
def get_subscription(sub: str, svc: Svc, _: Auth) -> JSONResponse:
    return json_response(shapes.subscription(svc.get_subscription(sub), svc.access.tenant_id()))


@router.put(RG)
def put_group(sub: str, rg: str, svc: Svc, _: Auth, body: GroupBody | None = None) -> JSONResponse:
    location = (body.location if body else None) or "eastus"
    return json_response(shapes.group(svc.put_group(sub, rg, location)))


@router.get(RG)
def get_group(sub: str, rg: str, svc: Svc, _: Auth) -> JSONResponse:
    return json_response(shapes.group(svc.get_group(sub, rg)))


# -- PostgreSQL servers ---------------------------------------------------------------------

SERVERS = P + "/Microsoft.DBforPostgreSQL/servers"


@router.put(SERVERS + "/{name}")
def put_server(
    sub: str, rg: str, name: str, svc: Svc, caller: Auth, body: ServerBody
) -> JSONResponse:
    server = svc.put_server(
        sub, rg, name, body.host, body.port, body.location, body.connection(), caller
    )
    return json_response(shapes.server(server))


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


#: pgvault reaches a registered server from where it runs; it keeps no address filter of
#: its own, so a server shows the one rule Azure's "Allow access to Azure services" is.
AZURE_SERVICES_RULE = "AllowAllWindowsAzureIps"


def _firewall_rule(server_id: str) -> dict[str, object]:
    return {
        "id": f"{server_id}/firewallRules/{AZURE_SERVICES_RULE}",
        "name": AZURE_SERVICES_RULE,
        "type": "Microsoft.DBforPostgreSQL/servers/firewallRules",
        "properties": {"startIpAddress": "0.0.0.0", "endIpAddress": "0.0.0.0"},
    }


@router.get(SERVERS + "/{server}/firewallRules")
def list_firewall_rules(sub: str, rg: str, server: str, svc: Svc, _: Auth) -> JSONResponse:
    """The line of sight backups need (what `update-msi-permissions` checks for)."""
    registered = svc.get_server(sub, rg, server)
    return json_response(shapes.page([_firewall_rule(registered.arm_id)]))


@router.get(SERVERS + "/{server}/firewallRules/{rule}")
def get_firewall_rule(sub: str, rg: str, server: str, rule: str, svc: Svc, _: Auth) -> JSONResponse:
    registered = svc.get_server(sub, rg, server)
    if rule.lower() != AZURE_SERVICES_RULE.lower():
        raise NotFound(
            f"Firewall rule {rule!r} not found: pgvault keeps no address filter; the server "
            f"shows only {AZURE_SERVICES_RULE!r}.",
            code=Code.ResourceNotFound,
        )
    return json_response(_firewall_rule(registered.arm_id))


# -- key vaults and secrets -----------------------------------------------------------------

KV = P + "/Microsoft.KeyVault/vaults"


@router.put(KV + "/{name}")
def put_keyvault(
    request: Request, sub: str, rg: str, name: str, svc: Svc, _: Auth, body: KeyVaultBody
) -> JSONResponse:
    kv = svc.put_keyvault(sub, rg, name, body.location)
    return json_response(shapes.keyvault(kv, keyvault_base(request, kv.name)))


@router.get(KV + "/{name}")
def get_keyvault(request: Request, sub: str, rg: str, name: str, svc: Svc, _: Auth) -> JSONResponse:
    kv = svc.get_keyvault(sub, rg, name)
    return json_response(shapes.keyvault(kv, keyvault_base(request, kv.name)))


@router.get(KV)
def list_keyvaults(request: Request, sub: str, rg: str, svc: Svc, _: Auth) -> JSONResponse:
    kvs = svc.list_keyvaults(sub, rg)
    return json_response(
        shapes.page([shapes.keyvault(k, keyvault_base(request, k.name)) for k in kvs])
    )


@router.delete(KV + "/{name}")
def delete_keyvault(sub: str, rg: str, name: str, svc: Svc, _: Auth) -> Response:
    svc.delete_keyvault(sub, rg, name)
    return Response(status_code=200)


@router.put(KV + "/{kv}/secrets/{name}")
def put_secret(
    request: Request, sub: str, rg: str, kv: str, name: str, svc: Svc, _: Auth, body: SecretBody
) -> JSONResponse:
    props = body.properties
    vault, row = svc.put_secret(sub, rg, kv, name, props.value, props.content_type)
    return json_response(shapes.secret(vault, row, keyvault_base(request, vault.name)))


@router.get(KV + "/{kv}/secrets/{name}")
def get_secret(
    request: Request, sub: str, rg: str, kv: str, name: str, svc: Svc, _: Auth
) -> JSONResponse:
    vault, row = svc.get_secret(sub, rg, kv, name)
    return json_response(shapes.secret(vault, row, keyvault_base(request, vault.name)))


@router.get(KV + "/{kv}/secrets")
def list_secrets(request: Request, sub: str, rg: str, kv: str, svc: Svc, _: Auth) -> JSONResponse:
    vault, rows = svc.list_secrets(sub, rg, kv)
    base = keyvault_base(request, vault.name)
    return json_response(shapes.page([shapes.secret(vault, r, base) for r in rows]))


# -- storage accounts and containers --------------------------------------------------------

SA = P + "/Microsoft.Storage/storageAccounts"
CONTAINERS = SA + "/{account}/blobServices/default/containers"


@router.put(SA + "/{name}")
def put_storage_account(
    request: Request, sub: str, rg: str, name: str, svc: Svc, _: Auth, body: StorageAccountBody
) -> JSONResponse:
    backend = body.backend
    account = svc.put_storage_account(
        sub, rg, name, body.location, backend.type or "local", backend.options()
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
    body: ContainerBody | None = None,
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


@router.post("/pgvault/catalog/rebuild")
def rebuild_catalog(svc: Svc, _: Auth) -> JSONResponse:
    """Recovery points rebuilt from the datastore's manifests (action pgvault/catalog/action
    at `/`: Owner). Adds only what the metadata lacks; answers what it found and did."""
    return json_response(svc.rebuild_catalog().to_dict())
