"""Sign-in for the Azure CLI and MSAL: cloud metadata, OpenID discovery, token endpoints, tenants.

`az cloud register --endpoint-resource-manager https://HOST:PORT` reads
`/metadata/endpoints`, whose login endpoint is `https://HOST:PORT/adfs`: an authority ending
in `/adfs` makes MSAL skip Microsoft's public instance discovery and read
`{authority}/.well-known/openid-configuration` instead. Per-tenant authorities
(`/{tenant}/v2.0/...`, the tenant by id or by the domain name `pgvault`) are served too.
The tokens are pgvault's ordinary bearer tokens (same roles, same revocation), with the
id_token, client_info and refresh token MSAL keeps in its cache.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse

from pgvault import identity
from pgvault.api import limits
from pgvault.api.deps import Auth, Svc, base_url, json_response
from pgvault.errors import PgVaultError
from pgvault.services.access import SignIn
from pgvault.tenancy import TENANT_DOMAIN

router = APIRouter()

#: Tenant names an authority may use besides the tenant id and domain.
_ANY_TENANT = {"adfs", "organizations", "common"}
_GRANTS = ("client_credentials", "password", "refresh_token")
#: The Azure CLI's public client id: the audience of a password grant's id_token without one.
AZ_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"


def _known(tenant: str, svc: Svc) -> bool:
    name = tenant.lower()
    return name in _ANY_TENANT or name in (TENANT_DOMAIN, svc.access.tenant_id())


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    """An OAuth 2.0 error body (RFC 6749 §5.2), the shape MSAL reads."""
    return JSONResponse(
        {"error": error, "error_description": description, "error_codes": [], "timestamp": ""},
        status_code=status,
    )


def _unknown_tenant(tenant: str) -> JSONResponse:
    return _oauth_error(
        400,
        "invalid_tenant",
        f"Tenant {tenant[:80]!r} not found: use the tenant id (GET /tenants) or {TENANT_DOMAIN!r}.",
    )


def _issuer(request: Request, tenant: str, svc: Svc) -> str:
    """The issuer MSAL compares the id_token's `iss` with: per authority path."""
    base = base_url(request)
    return f"{base}/adfs" if tenant.lower() == "adfs" else f"{base}/{svc.access.tenant_id()}/v2.0"


# -- cloud metadata -------------------------------------------------------------------------


@router.get("/metadata/endpoints")
def cloud_metadata(request: Request, svc: Svc) -> JSONResponse:
    """What `az cloud register --endpoint-resource-manager URL` reads (one cloud, no secrets)."""
    base = base_url(request)
    host = base.split("://", 1)[-1]
    return json_response(
        {
            "name": "pgvault",
            "resourceManager": f"{base}/",
            "portal": f"{base}/",
            "microsoftGraphResourceId": f"{base}/",
            "authentication": {
                "loginEndpoint": f"{base}/adfs",
                "audiences": [f"{base}/"],
                "tenant": svc.access.tenant_id(),
                "identityProvider": "ADFS",
            },
            "suffixes": {"keyVaultDns": host, "storage": host},
        }
    )


# -- OpenID Connect discovery ---------------------------------------------------------------


def _configuration(request: Request, tenant: str, svc: Svc, v2: bool) -> JSONResponse:
    if not _known(tenant, svc):
        return _unknown_tenant(tenant)
    base = base_url(request)
    tid = svc.access.tenant_id()
    prefix = f"{base}/adfs" if tenant.lower() == "adfs" else f"{base}/{tid}"
    token = f"{prefix}/oauth2/token" if tenant.lower() == "adfs" else f"{prefix}/oauth2/v2.0/token"
    return json_response(
        {
            "issuer": _issuer(request, tenant, svc),
            "token_endpoint": token,
            "authorization_endpoint": f"{prefix}/oauth2/{'v2.0/' if v2 else ''}authorize",
            "device_authorization_endpoint": f"{prefix}/oauth2/v2.0/devicecode",
            "jwks_uri": f"{prefix}/discovery/keys",
            "response_types_supported": ["code", "id_token", "token id_token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["HS256"],
            "grant_types_supported": list(_GRANTS),
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "scopes_supported": ["openid", "profile", "offline_access"],
            "tenant_region_scope": None,
        }
    )


@router.get("/adfs/.well-known/openid-configuration")
def adfs_configuration(request: Request, svc: Svc) -> JSONResponse:
    return _configuration(request, "adfs", svc, v2=False)


@router.get("/{tenant}/.well-known/openid-configuration")
def tenant_configuration(tenant: str, request: Request, svc: Svc) -> JSONResponse:
    return _configuration(request, tenant, svc, v2=False)


@router.get("/{tenant}/v2.0/.well-known/openid-configuration")
def tenant_configuration_v2(tenant: str, request: Request, svc: Svc) -> JSONResponse:
    return _configuration(request, tenant, svc, v2=True)


@router.get("/adfs/{tenant}/v2.0/.well-known/openid-configuration")
def adfs_tenant_configuration(tenant: str, request: Request, svc: Svc) -> JSONResponse:
    """What `az login --tenant NAME` reads under an `/adfs` authority to turn a tenant's
    domain name into its id (the issuer's first path segment)."""
    return _configuration(request, tenant, svc, v2=True)


@router.get("/{tenant}/discovery/keys")
def signing_keys(tenant: str, svc: Svc) -> JSONResponse:
    """No public keys: id_tokens are read by the client that asked, not verified by others."""
    if not _known(tenant, svc):
        return _unknown_tenant(tenant)
    return json_response({"keys": []})


# -- token endpoints ------------------------------------------------------------------------


def _token_body(
    request: Request, tenant: str, svc: Svc, signed: SignIn, client: str
) -> dict[str, Any]:
    now = int(time.time())
    p = signed.principal
    claims: dict[str, object] = {
        "iss": _issuer(request, tenant, svc),
        "aud": client,
        "sub": p.id,
        "oid": p.id,
        "tid": signed.tenant_id,
        "iat": now,
        "nbf": now,
        "exp": now + signed.expires_in,
        "name": p.name,
        "preferred_username": p.name,
        "upn": p.name,
        "ver": "2.0",
    }
    return {
        "token_type": "Bearer",
        "scope": f"{base_url(request)}/.default",
        "expires_in": signed.expires_in,
        "ext_expires_in": signed.expires_in,
        "access_token": signed.access_token,
        "refresh_token": signed.refresh_token,
        "id_token": identity.id_token(svc.ctx.token_key, claims),
        "client_info": identity.client_info(p.id, signed.tenant_id),
    }


class TokenForm:
    """The form of an OAuth token request (RFC 6749), the fields the three grants use."""

    def __init__(
        self,
        grant_type: str | None = Form(default=None),
        client_id: str | None = Form(default=None),
        client_secret: str | None = Form(default=None),
        username: str | None = Form(default=None),
        password: str | None = Form(default=None),
        refresh_token: str | None = Form(default=None),
        scope: str | None = Form(default=None),
    ) -> None:
        self.grant_type, self.client_id, self.client_secret = grant_type, client_id, client_secret
        self.username, self.password, self.refresh_token = username, password, refresh_token
        self.scope = scope


Token = Annotated[TokenForm, Depends()]


def _sign(svc: Svc, form: TokenForm) -> SignIn | JSONResponse:
    """The grant's sign-in, or the OAuth error for a malformed request."""
    grant = form.grant_type
    if grant == "client_credentials" and form.client_id and form.client_secret is not None:
        return svc.access.sign_in_oidc(grant, form.client_id, form.client_secret)
    if grant == "password" and form.username and form.password is not None:
        return svc.access.sign_in_oidc(grant, form.username, form.password)
    if grant == "refresh_token" and form.refresh_token:
        return svc.access.refresh(form.refresh_token)
    if grant not in _GRANTS:
        return _oauth_error(
            400, "unsupported_grant_type", "Use client_credentials, password or refresh_token."
        )
    return _oauth_error(
        400,
        "invalid_request",
        "client_credentials needs client_id and client_secret; password needs username and "
        "password; refresh_token needs refresh_token.",
    )


def _token(request: Request, svc: Svc, tenant: str, form: TokenForm) -> JSONResponse:
    if not _known(tenant, svc):
        return _unknown_tenant(tenant)
    name = form.username if form.grant_type == "password" else form.client_id
    address = limits.client_address(request.scope, svc.ctx.settings.trusted_proxies)
    try:
        request.app.state.token_rate_by_address.hit(address, f"address {address}")
        if name:
            request.app.state.token_rate_by_name.hit(name[:200], repr(name[:200]))
        signed = _sign(svc, form)
    except PgVaultError as exc:
        if exc.status == 429:
            response = _oauth_error(429, "temporarily_unavailable", exc.message)
            retry = getattr(exc, "retry_after", None)
            if retry is not None:
                response.headers["Retry-After"] = str(retry)
            return response
        error = "invalid_client" if form.grant_type == "client_credentials" else "invalid_grant"
        return _oauth_error(401 if exc.status == 401 else 400, error, exc.message)
    if isinstance(signed, JSONResponse):
        return signed
    audience = form.client_id or AZ_CLIENT_ID
    body = _token_body(request, tenant, svc, signed, audience)
    if form.scope:  # echoed: MSAL caches the token under the scope the response names
        body["scope"] = form.scope[:1000]
    return json_response(body)


@router.post("/adfs/oauth2/token")
def adfs_token(request: Request, svc: Svc, form: Token) -> JSONResponse:
    return _token(request, svc, "adfs", form)


@router.post("/{tenant}/oauth2/v2.0/token")
def tenant_token_v2(tenant: str, request: Request, svc: Svc, form: Token) -> JSONResponse:
    return _token(request, svc, tenant, form)


@router.post("/{tenant}/oauth2/token")
def tenant_token(tenant: str, request: Request, svc: Svc, form: Token) -> JSONResponse:
    return _token(request, svc, tenant, form)


# -- tenants --------------------------------------------------------------------------------


@router.get("/tenants")
def list_tenants(svc: Svc, _: Auth) -> JSONResponse:
    """The one tenant, as `az login` lists it (Microsoft.Resources/tenants)."""
    tid = svc.access.tenant_id()
    return json_response(
        {
            "value": [
                {
                    "id": f"/tenants/{tid}",
                    "tenantId": tid,
                    "tenantCategory": "Home",
                    "displayName": "pgvault",
                    "defaultDomain": TENANT_DOMAIN,
                    "domains": [TENANT_DOMAIN],
                    "tenantType": "AAD",
                }
            ]
        }
    )
