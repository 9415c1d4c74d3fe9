"""Request plumbing shared by the routers: the service, the caller, LRO headers, errors."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import orjson
from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response

from pgvault.api import actions, limits
from pgvault.errors import Code, Forbidden, PgVaultError, TooManyAttempts, Unauthorized
from pgvault.identity import Caller
from pgvault.services import Service

RETRY_AFTER = "1"


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "This call needs 'Authorization: Bearer TOKEN'. Get a token with `pgvault auth token` "
            "or POST /oauth2/token.",
            code=Code.AuthenticationFailed,
        )
    return token.strip()


def caller(request: Request, svc: Annotated[Service, Depends(service)]) -> Caller:
    """Every API call needs a valid bearer token and a role that allows its action here."""
    wanted = actions.requested(request.method, request.url.path)
    token = bearer(request)
    if wanted.open:
        who = svc.access.authenticate(token)
    else:
        try:
            who = svc.access.check(token, wanted.action, wanted.scope)
        except Forbidden:  # the audit middleware names who was refused
            request.state.caller = svc.access.authenticate(token)
            raise
    request.state.caller = who
    return who


def signed_in(request: Request, svc: Annotated[Service, Depends(service)]) -> Caller:
    """A valid bearer token, no role needed: directory reads (Microsoft Graph) that any
    signed-in principal of a tenant may make; what they return is decided by the route."""
    who = svc.access.authenticate(bearer(request))
    request.state.caller = who
    return who


Svc = Annotated[Service, Depends(service)]
Auth = Annotated[Caller, Depends(caller)]
SignedIn = Annotated[Caller, Depends(signed_in)]


def base_url(request: Request) -> str:
    """The URL clients reach us at (for LRO headers and generated URIs), never from the
    request's Host header: X-Forwarded-Host/Proto when a trusted proxy (PGVAULT_TRUSTED_PROXIES)
    sent them, else PGVAULT_PUBLIC_URL, else the address this server listens on."""
    settings = service(request).ctx.settings
    forwarded = limits.forwarded_base(request.scope, settings.trusted_proxies)
    return (forwarded or settings.public_url or limits.own_base(request.scope)).rstrip("/")


def public_url(request: Request, svc: Service) -> str:
    return base_url(request)


def keyvault_base(request: Request, name: str) -> str:
    """A key vault's vaultUri without the trailing slash: `https://NAME.SUFFIX[:PORT]` with
    PGVAULT_KEYVAULT_DNS_SUFFIX (the port of the public URL), else `PUBLIC_URL/keyvaults/NAME`."""
    suffix = service(request).ctx.settings.keyvault_dns_suffix
    base = base_url(request)
    if not suffix:
        return f"{base}/keyvaults/{name}"
    parts = urlsplit(base)
    port = f":{parts.port}" if parts.port and parts.port != 443 else ""
    return f"https://{name.lower()}.{suffix}{port}"


def accepted(request: Request, scope_id: str, op_id: str) -> Response:
    """202 with the Azure async-operation headers pointing at operationStatus/Results."""
    base = base_url(request) + quote(scope_id, safe="/:@!$&'()*+,;=-._~")
    version = quote(request.query_params.get("api-version", "2025-07-01"), safe="-.")
    headers = {
        "Azure-AsyncOperation": f"{base}/operationStatus/{op_id}?api-version={version}",
        "Location": f"{base}/operationResults/{op_id}?api-version={version}",
        "Retry-After": RETRY_AFTER,
    }
    return Response(status_code=202, headers=headers)


class FastJSONResponse(JSONResponse):
    """JSON encoded by orjson: `json.dumps` of a page of jobs was the largest single cost
    of a list call under load (benchmarks/api_load.py). Same compact UTF-8 output."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def error_response(exc: PgVaultError) -> JSONResponse:
    response = FastJSONResponse(status_code=exc.status, content=exc.to_body())
    if isinstance(exc, TooManyAttempts) and exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def json_response(body: object, status: int = 200) -> JSONResponse:
    return FastJSONResponse(status_code=status, content=body)
