"""The Key Vault data plane as az and SecretClient use it: host-based vaultUri, the 401
challenge, list and get of secrets; a value only with getSecret (audited)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pgvault.api.app import create_app
from pgvault.config import Settings, keyvault_suffix
from pgvault.context import Context
from tests.support.apiapp import AUTHZ, Api

SUFFIX = "vault.pgvault.test"
KV = "providers/Microsoft.KeyVault/vaults"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The app with PGVAULT_KEYVAULT_DNS_SUFFIX and a public URL on a port."""
    home = tmp_path_factory.mktemp("kvdp")
    settings = Settings(
        home=home,
        datastore_url="memory://",
        public_url="https://pgvault.test:8443",
        keyvault_dns_suffix=SUFFIX,
    )
    ctx = Context.create(settings)
    with TestClient(create_app(ctx, start_workers=False), raise_server_exceptions=False) as c:
        yield Api.signed_in(ctx, c)
    ctx.db.dispose()


@pytest.fixture(scope="module")
def kv(api: Api) -> dict[str, Any]:
    name = f"kv{uuid.uuid4().hex[:8]}"
    rg = api.rg("default")
    created = api.ok("PUT", f"{rg}/{KV}/{name}", {"location": "eastus"})
    secret = api.ok("PUT", f"{rg}/{KV}/{name}/secrets/conn", {"properties": {"value": "s3cr3t"}})
    return {"name": name, "id": created["id"], "created": created, "secret": secret}


def _dp(api: Api, kv: dict[str, Any], path: str, headers: Any = None) -> Any:
    """A data-plane call, addressed to the key vault's own host."""
    url = f"https://{kv['name']}.{SUFFIX}:8443{path}"
    return api.client.get(url, params={"api-version": "7.5"}, headers=headers or {})


def test_vault_uri_and_secret_uri_are_host_based(kv: dict[str, Any]) -> None:
    assert kv["created"]["properties"]["vaultUri"] == f"https://{kv['name']}.{SUFFIX}:8443/"
    uri = kv["secret"]["properties"]["secretUri"]
    assert uri == f"https://{kv['name']}.{SUFFIX}:8443/secrets/conn"
    # the SDK's parse: https://HOST/secrets/NAME[/VERSION]
    assert uri.split("/")[3:] == ["secrets", "conn"]


def test_no_token_gets_the_key_vault_challenge(api: Api, kv: dict[str, Any]) -> None:
    r = _dp(api, kv, "/secrets")
    assert r.status_code == 401
    challenge = r.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer authorization=")
    assert f'resource="https://{SUFFIX}:8443"' in challenge
    assert "s3cr3t" not in r.text


def test_list_needs_a_key_vault_data_role(api: Api, kv: dict[str, Any]) -> None:
    reader = api.principal(f"kvreader-{uuid.uuid4().hex[:6]}")
    role = api.ok("GET", f"{AUTHZ}/roleDefinitions?$filter=roleName eq 'Reader'")
    api.assign(kv["id"], role["value"][0]["id"], reader["principalId"])
    r = _dp(api, kv, "/secrets", api.sign_in(reader))  # Reader has no data actions
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "ForbiddenByRbac"


def test_list_and_get_with_secrets_user_value_audited(api: Api, kv: dict[str, Any]) -> None:
    user = api.principal(f"kvuser-{uuid.uuid4().hex[:6]}")
    role = api.ok("GET", f"{AUTHZ}/roleDefinitions?$filter=roleName eq 'Key Vault Secrets User'")
    api.assign(kv["id"], role["value"][0]["id"], user["principalId"])
    headers = api.sign_in(user)
    listed = _dp(api, kv, "/secrets", headers).json()
    assert [i["id"] for i in listed["value"]] == [kv["secret"]["properties"]["secretUri"]]
    assert "value" not in listed["value"][0]
    got = _dp(api, kv, "/secrets/conn", headers).json()
    assert got["value"] == "s3cr3t"
    assert got["id"] == kv["secret"]["properties"]["secretUriWithVersion"]
    events = api.audit()
    assert any(e["operationName"]["value"].endswith("getSecret/action") for e in events)
    assert _dp(api, kv, "/secrets/missing", headers).status_code == 404


def test_other_paths_on_a_key_vault_host_are_not_arm(api: Api, kv: dict[str, Any]) -> None:
    r = _dp(api, kv, "/subscriptions", api.admin)
    assert r.status_code == 404


@pytest.mark.parametrize("bad", ["pgvault.test", "vault", "Vault.X..y", "vault.-x"])
def test_suffix_must_start_with_vault(bad: str) -> None:
    with pytest.raises(ValueError, match="vault"):
        keyvault_suffix(bad)


def test_without_suffix_vault_uri_stays_path_based(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, datastore_url="memory://")
    ctx = Context.create(settings)
    with TestClient(create_app(ctx, start_workers=False)) as client:
        api = Api.signed_in(ctx, client)
        created = api.ok(
            "PUT", f"{api.rg('default')}/{KV}/kvpath{uuid.uuid4().hex[:6]}", {"location": "eastus"}
        )
        assert "/keyvaults/" in created["properties"]["vaultUri"]
    ctx.db.dispose()
