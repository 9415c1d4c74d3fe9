"""Sign-in as az and MSAL make it: cloud metadata, OpenID discovery, per-tenant token endpoints
(client credentials, password, refresh), tenants; the tokens are pgvault's ordinary ones."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.support.apiapp import Api


def _claims(jwt: str) -> dict[str, Any]:
    body = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


@pytest.fixture(scope="module")
def tenant(api: Api) -> str:
    return str(api.get("/tenants").json()["value"][0]["tenantId"])


def test_cloud_metadata_points_at_an_adfs_authority(api: Api) -> None:
    meta = api.client.get("/metadata/endpoints?api-version=2022-09-01").json()
    assert meta["authentication"]["loginEndpoint"].endswith("/adfs")
    assert meta["resourceManager"].endswith("/")
    assert meta["authentication"]["audiences"]


@pytest.mark.parametrize(
    "path",
    [
        "/adfs/pgvault/v2.0/.well-known/openid-configuration",
        "/pgvault/v2.0/.well-known/openid-configuration",
        "/PGVAULT/v2.0/.well-known/openid-configuration",
    ],
)
def test_tenant_name_resolves_to_the_id_through_the_issuer(
    api: Api, tenant: str, path: str
) -> None:
    config = api.client.get(path).json()
    assert config["issuer"].split("/")[3] == tenant  # what `az login --tenant NAME` reads
    assert config["token_endpoint"].endswith(f"/{tenant}/oauth2/v2.0/token")


def test_unknown_tenant_is_an_oauth_400(api: Api) -> None:
    r = api.client.get("/contoso/v2.0/.well-known/openid-configuration")
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_tenant"
    r = api.client.post("/contoso/oauth2/v2.0/token", data={"grant_type": "password"})
    assert r.json()["error"] == "invalid_tenant"


@pytest.mark.parametrize(
    "where", ["adfs/oauth2/token", "{t}/oauth2/v2.0/token", "pgvault/oauth2/token"]
)
def test_client_credentials_give_msal_what_it_needs(api: Api, tenant: str, where: str) -> None:
    creds = api.admin_creds
    form = {
        "grant_type": "client_credentials",
        "client_id": creds["clientId"],
        "client_secret": creds["clientSecret"],
        "scope": "https://x/.default",
    }
    body = api.client.post("/" + where.format(t=tenant), data=form).json()
    assert body["scope"] == "https://x/.default"  # MSAL caches the token under this scope
    claims = _claims(body["id_token"])
    assert claims["aud"] == creds["clientId"]
    assert claims["tid"] == tenant
    assert claims["exp"] > claims["iat"]
    info = json.loads(base64.urlsafe_b64decode(body["client_info"] + "=="))
    assert info == {"uid": claims["oid"], "utid": tenant}
    # an ordinary pgvault bearer token
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    subs = api.client.get("/subscriptions", headers=headers).json()["value"]
    assert subs[0]["tenantId"] == tenant


def test_password_grant_refresh_and_revocation(api: Api, tenant: str) -> None:
    user = api.principal("oidc-user", "user")
    form = {"grant_type": "password", "username": "oidc-user", "password": user["secret"]}
    form["client_id"] = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
    body = api.client.post(f"/{tenant}/oauth2/v2.0/token", data=form).json()
    claims = _claims(body["id_token"])
    assert claims["preferred_username"] == "oidc-user"
    assert claims["aud"] == form["client_id"]
    refresh = body["refresh_token"]
    # a refresh token is not a bearer token
    r = api.client.get("/subscriptions", headers={"Authorization": f"Bearer {refresh}"})
    assert r.status_code == 401
    again = api.client.post(
        f"/{tenant}/oauth2/v2.0/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh},
    ).json()
    assert again["access_token"] != body["access_token"]
    # used once: the old refresh token is revoked
    r = api.client.post(
        f"/{tenant}/oauth2/v2.0/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh},
    )
    assert r.status_code in (400, 401)
    assert r.json()["error"] == "invalid_grant"
    # an access token is not a refresh token
    r = api.client.post(
        "/adfs/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": again["access_token"]},
    )
    assert r.json()["error"] == "invalid_grant"


def test_wrong_secret_is_an_oauth_error(api: Api) -> None:
    r = api.client.post(
        "/adfs/oauth2/token",
        data={"grant_type": "password", "username": "nobody", "password": "wrong"},
    )
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_grant"
    r = api.client.post("/adfs/oauth2/token", data={"grant_type": "implicit"})
    assert r.json()["error"] == "unsupported_grant_type"


def test_tenants_need_a_token(api: Api) -> None:
    assert api.client.get("/tenants").status_code == 401
    assert api.get("/tenants").json()["value"][0]["defaultDomain"] == "pgvault"
