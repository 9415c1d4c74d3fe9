"""The Key Vault data plane, as far as az and the Key Vault SDK's SecretClient use it.

`GET {vaultUri}secrets` lists secrets (their ids and attributes, never values);
`GET {vaultUri}secrets/{name}[/{version}]` returns one secret's attributes, and its value only
to a caller whose role grants `secrets/getSecret/action` (Key Vault Secrets User), which the
audit log records. A call without a valid token gets the 401 challenge the SDK expects
(`WWW-Authenticate: Bearer authorization=…, resource=…`). With PGVAULT_KEYVAULT_DNS_SUFFIX a
key vault is its own host, `https://KV.SUFFIX[:PORT]/`, as the SDK requires (it parses
secret ids as `https://HOST/secrets/NAME/VERSION`); `KeyVaultHost` maps such a host onto the
`/keyvaults/KV/...` routes here.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from pgvault import rbac, secrets
from pgvault.api.deps import Svc, base_url, bearer, json_response, keyvault_base
from pgvault.errors import Code, Forbidden, PgVaultError
from pgvault.identity import Caller

router = APIRouter()
KV = "/keyvaults/{kv}"
READ_METADATA = "Microsoft.KeyVault/vaults/secrets/readMetadata/action"


class KeyVaultHost:
    """`Host: KV.SUFFIX[:PORT]` → path `/keyvaults/KV/...` (nothing else is served there)."""

    def __init__(self, app: ASGIApp, suffix: str) -> None:
        self.app = app
        self.pattern = re.compile(rf"^([a-z0-9-]{{3,24}})\.{re.escape(suffix)}(:\d+)?$")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = ""
            for name, value in scope.get("headers", []):
                if name == b"host":
                    host = value.decode("latin-1").lower()
                    break
            match = self.pattern.match(host)
            if match:
                path = f"/keyvaults/{match.group(1)}{scope['path']}"
                scope = dict(scope, path=path, raw_path=path.encode())
        await self.app(scope, receive, send)


def _challenge(request: Request) -> str:
    """Where to get a token and for which resource: the key-vault domain (the SDK checks that
    the vault's host ends with it) or, path-based, the service itself."""
    svc = request.app.state.service
    base = base_url(request)
    suffix = svc.ctx.settings.keyvault_dns_suffix
    port = urlsplit(base).port
    resource = f"https://{suffix}{f':{port}' if port else ''}" if suffix else base
    return f'Bearer authorization="{base}/{svc.access.tenant_id()}", resource="{resource}"'


def data_plane_caller(request: Request, svc: Svc) -> Caller:
    """The signed-in caller; without a valid token, 401 with the Key Vault challenge.

    What it may do is decided per route, by Key Vault's data actions (`_require`).
    """
    try:
        who = svc.access.authenticate(bearer(request))
    except PgVaultError as exc:
        if exc.status != 401:
            raise
        body: dict[str, Any] = {
            "error": {
                "code": "Unauthorized",
                "message": "AKV10000: Request is missing a Bearer or PoP token.",
            }
        }
        raise Challenge(JSONResponse(body, status_code=401)) from None
    request.state.caller = who
    return who


class Challenge(Exception):
    """Carries the 401 answer out of the dependency (the app's handler adds the header)."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__("key vault challenge")
        self.response = response


def challenge_response(request: Request, exc: Challenge) -> JSONResponse:
    exc.response.headers["WWW-Authenticate"] = _challenge(request)
    return exc.response


DataCaller = Annotated[Caller, Depends(data_plane_caller)]


def _attributes(row: secrets.SecretVersion) -> dict[str, Any]:
    stamp = int(row.created_at.timestamp())
    return {
        "enabled": True,
        "created": stamp,
        "updated": stamp,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": 90,
    }


def _item(request: Request, kv: secrets.KeyVault, row: secrets.SecretVersion) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": secrets.secret_uri_at(keyvault_base(request, kv.name), row.name),
        "attributes": _attributes(row),
        "tags": {},
    }
    if row.content_type:
        body["contentType"] = row.content_type
    return body


def _require(svc: Svc, who: Caller, actions: tuple[str, ...], scope: str) -> None:
    """403 as Key Vault answers it (ForbiddenByRbac) unless one of the data actions is granted."""
    if any(svc.access.allowed_data(who, a, scope) for a in actions):
        return
    raise Forbidden(
        f"Caller '{who.name}' is not authorized to perform action '{actions[0]}' on "
        f"resource '{scope}'.",
        code=Code.ForbiddenByRbac,
        recommended_action="Assign the caller 'Key Vault Secrets User' on the key vault: "
        f'az role assignment create --assignee {who.principal_id} --role "Key Vault Secrets '
        f'User" --scope {scope}',
        target=actions[0],
    )


@router.get(KV + "/secrets")
def list_secrets(
    kv: str,
    request: Request,
    svc: Svc,
    who: DataCaller,
    maxresults: int | None = Query(default=None, ge=1, le=25),
) -> JSONResponse:
    """The secrets' ids and attributes (Key Vault Secrets User, or readMetadata)."""
    vault = svc.data_plane_vault(kv)
    _require(svc, who, (READ_METADATA, rbac.GET_SECRET), vault.arm_id)
    rows = svc.data_plane_secrets(vault)
    return json_response({"value": [_item(request, vault, r) for r in rows], "nextLink": None})


def _get(
    request: Request, svc: Svc, who: Caller, kv: str, name: str, version: str | None
) -> JSONResponse:
    vault = svc.data_plane_vault(kv)
    scope = f"{vault.arm_id}/secrets/{name}"
    _require(svc, who, (READ_METADATA, rbac.GET_SECRET), scope)
    row = svc.data_plane_secret(vault, name, version)
    body = _item(request, vault, row)
    body["id"] = secrets.secret_uri_at(keyvault_base(request, vault.name), row.name, row.version)
    if svc.access.allowed_data(who, rbac.GET_SECRET, scope):
        body["value"] = svc.reveal_secret(vault, row)
        svc.access.record(who, rbac.GET_SECRET, scope, "GET", 200, None)
    return json_response(body)


@router.get(KV + "/secrets/{name}")
def get_secret(kv: str, name: str, request: Request, svc: Svc, who: DataCaller) -> JSONResponse:
    """A secret's newest version: its value with getSecret (audited), else its attributes."""
    return _get(request, svc, who, kv, name, None)


@router.get(KV + "/secrets/{name}/{version}")
def get_secret_version(
    kv: str, name: str, version: str, request: Request, svc: Svc, who: DataCaller
) -> JSONResponse:
    return _get(request, svc, who, kv, name, version)
