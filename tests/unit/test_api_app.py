"""The whole API in-process: memory datastore, SQLite metadata under tmp, no workers."""

from __future__ import annotations

import itertools
import json
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pgvault import secrets
from pgvault.api.app import create_app
from pgvault.config import Settings
from pgvault.context import Context
from tests.support.apiapp import Api, admin_form, bearer, client_form

SECRET_VALUE = "Server=db.example;Port=5432;Database=sales;User Id=u;Password=Very-S3cret-pw;"
PG = "providers/Microsoft.DBforPostgreSQL/servers"
KV = "providers/Microsoft.KeyVault/vaults"
DP = "providers/Microsoft.DataProtection/backupVaults"


_counter = itertools.count()


@pytest.fixture
def rg(api: Api) -> str:
    """A fresh resource group per test, so tests on the shared app don't see each other."""
    name = f"rg-{next(_counter)}"
    r = api.put(api.rg(name), {"location": "eastus"})
    assert r.status_code == 200, r.text
    return api.rg(name)


def _error_code(r: Any) -> str:
    body = r.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"]
    return str(body["error"]["code"])


# -- service basics -------------------------------------------------------------------------


def test_healthz_needs_no_token(api: Api) -> None:
    r = api.client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_credentials_file_is_private(api: Api) -> None:
    path = api.ctx.settings.credentials_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    creds = json.loads(path.read_text())
    assert set(creds) == {"clientId", "clientSecret"}
    assert creds["clientId"]
    assert creds["clientSecret"]


def test_key_files_are_private(api: Api) -> None:
    keys = list(api.ctx.settings.keys_dir.iterdir())
    assert {p.name for p in keys} == {"master.key", "token-signing.key"}
    for p in keys:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600


UNAUTHENTICATED_CALLS = [
    ("GET", "/subscriptions"),
    ("GET", "/subscriptions/x/resourceGroups/default"),
    ("PUT", f"/subscriptions/x/resourceGroups/default/{DP}/v"),
    ("GET", f"/subscriptions/x/resourceGroups/default/{KV}/kv1/secrets/s"),
    ("DELETE", f"/subscriptions/x/resourceGroups/default/{PG}/pg"),
    ("POST", f"/subscriptions/x/resourceGroups/default/{DP}/v/backupInstances/bi/restore"),
]


@pytest.mark.parametrize(("method", "path"), UNAUTHENTICATED_CALLS)
def test_calls_without_a_token_are_401(api: Api, method: str, path: str) -> None:
    r = api.client.request(method, path, json={"location": "eastus"})
    assert r.status_code == 401
    assert _error_code(r) == "AuthenticationFailed"


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        ("Basic dXNlcjpwYXNz", "AuthenticationFailed"),
        ("Bearer ", "AuthenticationFailed"),
        ("bearer garbage", "InvalidAuthenticationToken"),
        ("Bearer garbage", "InvalidAuthenticationToken"),
        ("Bearer a.b", "InvalidAuthenticationToken"),
    ],
)
def test_calls_with_a_bad_token_are_401(api: Api, authorization: str, code: str) -> None:
    for method, path in UNAUTHENTICATED_CALLS:
        r = api.client.request(
            method, path, headers={"Authorization": authorization}, json={"location": "eastus"}
        )
        assert r.status_code == 401, (method, path)
        assert _error_code(r) == code


def test_non_ascii_bearer_token_is_401(api: Api) -> None:
    r = api.client.get("/subscriptions", headers={"Authorization": b"Bearer abc.\xe9"})
    assert r.status_code == 401
    assert _error_code(r) == "InvalidAuthenticationToken"


def test_token_endpoint(api: Api) -> None:
    r = api.client.post("/oauth2/token", data=admin_form(api.ctx))
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == api.ctx.settings.token_lifetime_seconds
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert api.client.get("/subscriptions", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "change",
    [
        {"client_secret": "wrong"},
        {"client_id": str(uuid.uuid4())},
    ],
)
def test_token_with_wrong_credentials_is_401(api: Api, change: dict[str, str]) -> None:
    r = api.client.post("/oauth2/token", data=admin_form(api.ctx, **change))
    assert r.status_code == 401
    assert _error_code(r) == "InvalidClientCredentials"
    assert "access_token" not in r.text


def test_token_with_other_grant_type_is_400(api: Api) -> None:
    r = api.client.post("/oauth2/token", data=admin_form(api.ctx, grant_type="authorization_code"))
    assert r.status_code == 400
    assert _error_code(r) == "unsupported_grant_type"


def test_token_without_form_fields_is_400(api: Api) -> None:
    r = api.client.post("/oauth2/token", data={"grant_type": "client_credentials"})
    assert r.status_code == 400
    assert _error_code(r) == "invalid_request"


# -- tenancy --------------------------------------------------------------------------------


def test_default_subscription_and_resource_group(api: Api) -> None:
    r = api.get("/subscriptions")
    assert r.status_code == 200
    page = r.json()
    assert set(page) == {"value", "nextLink"}
    assert [s["isDefault"] for s in page["value"]] == [True]
    r = api.get(api.rg("default"))
    assert r.status_code == 200
    assert r.json()["id"] == f"/subscriptions/{api.sub}/resourceGroups/default"
    assert r.json()["name"] == "default"


def test_missing_resource_group_is_404(api: Api) -> None:
    r = api.get(api.rg("nope"))
    assert r.status_code == 404
    assert _error_code(r) == "ResourceGroupNotFound"
    r = api.put(f"{api.rg('nope')}/{DP}/v1", {"location": "eastus"})
    assert r.status_code == 404
    assert _error_code(r) == "ResourceGroupNotFound"


def test_unknown_subscription_is_404(api: Api) -> None:
    r = api.put(f"/subscriptions/{uuid.uuid4()}/resourceGroups/g", {"location": "eastus"})
    assert r.status_code == 404
    assert _error_code(r) == "SubscriptionNotFound"


# -- servers, key vaults, secrets -----------------------------------------------------------


def test_register_server(api: Api, rg: str) -> None:
    body = {
        "location": "East US",
        "properties": {"fullyQualifiedDomainName": "db.example", "port": 6432},
    }
    r = api.put(f"{rg}/{PG}/pg1", body)
    assert r.status_code == 200, r.text
    server = r.json()
    assert server["id"] == f"{rg}/{PG}/pg1"
    assert server["location"] == "eastus"
    assert server["properties"]["fullyQualifiedDomainName"] == "db.example"
    assert server["properties"]["port"] == 6432
    assert api.get(f"{rg}/{PG}/pg1").json() == server
    page = api.get(f"{rg}/{PG}").json()
    assert page == {"value": [server], "nextLink": None}


@pytest.mark.parametrize(
    "props",
    [
        {},
        {"fullyQualifiedDomainName": "db.example", "port": "5432"},
        {"fullyQualifiedDomainName": "db.example", "port": 70000},
        {"fullyQualifiedDomainName": "db example"},
        {"fullyQualifiedDomainName": "user@db.example"},
    ],
)
def test_register_server_bad_address(api: Api, rg: str, props: dict[str, Any]) -> None:
    r = api.put(f"{rg}/{PG}/pg1", {"location": "eastus", "properties": props})
    assert r.status_code == 400
    assert api.get(f"{rg}/{PG}").json()["value"] == []


def test_keyvault_and_secret_never_return_the_value(api: Api, rg: str) -> None:
    kv_name = f"kv-{uuid.uuid4().hex[:8]}"
    r = api.put(f"{rg}/{KV}/{kv_name}", {"location": "eastus"})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == kv_name

    r = api.put(f"{rg}/{KV}/{kv_name}/secrets/pg-conn", {"properties": {"value": SECRET_VALUE}})
    assert r.status_code == 200, r.text
    assert "Very-S3cret-pw" not in r.text
    props = r.json()["properties"]
    ref = secrets.parse_secret_uri(props["secretUri"])
    assert (ref.vault, ref.name, ref.version) == (kv_name, "pg-conn", None)
    assert secrets.parse_secret_uri(props["secretUriWithVersion"]).version

    r = api.get(f"{rg}/{KV}/{kv_name}/secrets/pg-conn")
    assert r.status_code == 200
    assert "Very-S3cret-pw" not in r.text
    assert "value" not in r.json()["properties"]
    assert r.json()["properties"]["secretUri"] == props["secretUri"]

    r = api.get(f"{rg}/{KV}/{kv_name}/secrets")
    assert r.status_code == 200
    assert "Very-S3cret-pw" not in r.text
    assert [s["name"] for s in r.json()["value"]] == ["pg-conn"]

    # and it is not stored in clear either
    home = api.ctx.settings.home
    for path in home.glob("pgvault.db*"):
        assert b"Very-S3cret-pw" not in path.read_bytes(), path


def test_new_secret_version_is_returned_by_get(api: Api, rg: str) -> None:
    kv_name = f"kv-{uuid.uuid4().hex[:8]}"
    api.put(f"{rg}/{KV}/{kv_name}", {"location": "eastus"})
    first = api.put(f"{rg}/{KV}/{kv_name}/secrets/s", {"properties": {"value": "one"}}).json()
    second = api.put(f"{rg}/{KV}/{kv_name}/secrets/s", {"properties": {"value": "two"}}).json()
    v1 = first["properties"]["secretUriWithVersion"]
    v2 = second["properties"]["secretUriWithVersion"]
    assert v1 != v2
    got = api.get(f"{rg}/{KV}/{kv_name}/secrets/s").json()
    assert got["properties"]["secretUriWithVersion"] == v2
    assert len(api.get(f"{rg}/{KV}/{kv_name}/secrets").json()["value"]) == 1


@pytest.mark.parametrize(
    "body", [{}, {"properties": {}}, {"properties": {"value": ""}}, {"properties": {"value": 5}}]
)
def test_secret_without_value_is_400(api: Api, rg: str, body: dict[str, Any]) -> None:
    kv_name = f"kv-{uuid.uuid4().hex[:8]}"
    api.put(f"{rg}/{KV}/{kv_name}", {"location": "eastus"})
    r = api.put(f"{rg}/{KV}/{kv_name}/secrets/s", body)
    assert r.status_code == 400
    assert api.get(f"{rg}/{KV}/{kv_name}/secrets").json()["value"] == []


def test_missing_secret_is_404(api: Api, rg: str) -> None:
    kv_name = f"kv-{uuid.uuid4().hex[:8]}"
    api.put(f"{rg}/{KV}/{kv_name}", {"location": "eastus"})
    r = api.get(f"{rg}/{KV}/{kv_name}/secrets/nope")
    assert r.status_code == 404
    assert _error_code(r) == "SecretNotFound"


def test_keyvault_names_are_global(api: Api, rg: str) -> None:
    kv_name = f"kv-{uuid.uuid4().hex[:8]}"
    assert api.put(f"{rg}/{KV}/{kv_name}", {"location": "eastus"}).status_code == 200
    r = api.put(f"{api.rg('default')}/{KV}/{kv_name}", {"location": "eastus"})
    assert r.status_code == 400
    assert _error_code(r) == "VaultAlreadyExists"


# -- backup vaults and policies -------------------------------------------------------------


def test_vault_create_then_update(api: Api, rg: str) -> None:
    r = api.put(f"{rg}/{DP}/vault1", {"location": "eastus", "tags": {"env": "test"}})
    assert r.status_code == 201, r.text
    vault = r.json()
    assert vault["id"] == f"{rg}/{DP}/vault1"
    assert vault["name"] == "vault1"
    assert vault["location"] == "eastus"
    assert vault["tags"] == {"env": "test"}
    principal = vault["identity"]["principalId"]
    assert uuid.UUID(principal)
    assert vault["identity"]["type"] == "SystemAssigned"

    body = {
        "location": "eastus",
        "properties": {"securitySettings": {"softDeleteSettings": {"retentionDurationInDays": 30}}},
    }
    r = api.put(f"{rg}/{DP}/vault1", body)
    assert r.status_code == 200, r.text
    again = r.json()
    assert again["identity"]["principalId"] == principal
    soft = again["properties"]["securitySettings"]["softDeleteSettings"]
    assert soft == {"state": "On", "retentionDurationInDays": 30}

    assert api.get(f"{rg}/{DP}/vault1").json()["identity"]["principalId"] == principal
    page = api.get(f"{rg}/{DP}").json()
    assert set(page) == {"value", "nextLink"}
    assert [v["name"] for v in page["value"]] == ["vault1"]
    sub_page = api.get(
        f"/subscriptions/{api.sub}/providers/Microsoft.DataProtection/backupVaults"
    ).json()
    assert "vault1" in [v["name"] for v in sub_page["value"]]


def test_vault_cannot_move_region(api: Api, rg: str) -> None:
    assert api.put(f"{rg}/{DP}/v", {"location": "eastus"}).status_code == 201
    r = api.put(f"{rg}/{DP}/v", {"location": "westus"})
    assert r.status_code == 400
    assert _error_code(r) == "LocationCannotBeChanged"


def test_vault_needs_a_location(api: Api, rg: str) -> None:
    r = api.put(f"{rg}/{DP}/v", {})
    assert r.status_code == 400
    assert _error_code(r) == "InvalidRequestContent"
    assert api.get(f"{rg}/{DP}").json()["value"] == []


def test_missing_vault_is_404(api: Api, rg: str) -> None:
    r = api.get(f"{rg}/{DP}/nope")
    assert r.status_code == 404
    assert _error_code(r) == "ResourceNotFound"


def test_policy_defaults_and_list(api: Api, rg: str) -> None:
    assert api.put(f"{rg}/{DP}/v", {"location": "eastus"}).status_code == 201
    r = api.put(f"{rg}/{DP}/v/backupPolicies/weekly", {"properties": {}})
    assert r.status_code == 200, r.text
    policy = r.json()
    assert policy["id"] == f"{rg}/{DP}/v/backupPolicies/weekly"
    kinds = [rule["objectType"] for rule in policy["properties"]["policyRules"]]
    assert kinds == ["AzureBackupRule", "AzureRetentionRule"]
    assert api.get(f"{rg}/{DP}/v/backupPolicies/WEEKLY").json() == policy
    page = api.get(f"{rg}/{DP}/v/backupPolicies").json()
    assert page == {"value": [policy], "nextLink": None}


def test_policy_without_retention_rule_is_400(api: Api, rg: str) -> None:
    assert api.put(f"{rg}/{DP}/v", {"location": "eastus"}).status_code == 201
    default = api.put(f"{rg}/{DP}/v/backupPolicies/p", {"properties": {}}).json()
    backup_rule = default["properties"]["policyRules"][0]
    r = api.put(f"{rg}/{DP}/v/backupPolicies/bad", {"properties": {"policyRules": [backup_rule]}})
    assert r.status_code == 400
    assert _error_code(r) == "BadParameter"
    names = [p["name"] for p in api.get(f"{rg}/{DP}/v/backupPolicies").json()["value"]]
    assert names == ["p"]


def test_policy_in_missing_vault_is_404(api: Api, rg: str) -> None:
    r = api.put(f"{rg}/{DP}/nope/backupPolicies/p", {"properties": {}})
    assert r.status_code == 404


# -- names, casing, regions -----------------------------------------------------------------

# ('..' and '/' never reach a route: the client normalizes dot segments; see test_arm.py.)
BAD_NAMES = ["bad name", "-lead", "trail.", "x" * 64, ".hidden", "a%3Fb", "caf%C3%A9", "a%0A"]


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (DP, {"location": "eastus"}),
        (PG, {"location": "eastus", "properties": {"fullyQualifiedDomainName": "h"}}),
        (KV, {"location": "eastus"}),
    ],
)
def test_invalid_names_are_400_and_create_nothing(
    api: Api, rg: str, kind: str, body: dict[str, Any], name: str
) -> None:
    r = api.put(f"{rg}/{kind}/{name}", body)
    assert r.status_code == 400, r.text
    assert _error_code(r) == "InvalidResourceName"
    assert api.get(f"{rg}/{kind}").json() == {"value": [], "nextLink": None}


@pytest.mark.parametrize("name", ["UPPER", "ab", "under_score", "x" * 25])
def test_invalid_keyvault_names(api: Api, rg: str, name: str) -> None:
    r = api.put(f"{rg}/{KV}/{name}", {"location": "eastus"})
    assert r.status_code == 400
    assert _error_code(r) == "InvalidResourceName"
    assert api.get(f"{rg}/{KV}").json()["value"] == []


@pytest.mark.parametrize("name", BAD_NAMES[:4])
def test_invalid_policy_names(api: Api, rg: str, name: str) -> None:
    assert api.put(f"{rg}/{DP}/v", {"location": "eastus"}).status_code == 201
    r = api.put(f"{rg}/{DP}/v/backupPolicies/{name}", {"properties": {}})
    assert r.status_code == 400
    assert _error_code(r) == "InvalidResourceName"
    assert api.get(f"{rg}/{DP}/v/backupPolicies").json()["value"] == []


def test_invalid_resource_group_name(api: Api) -> None:
    r = api.put(api.rg("bad name"), {"location": "eastus"})
    assert r.status_code == 400
    assert _error_code(r) == "InvalidResourceName"


def test_fixed_path_segments_are_case_insensitive(api: Api, rg: str) -> None:
    rg_name = rg.rsplit("/", 1)[1]
    shouting = (
        f"/SUBSCRIPTIONS/{api.sub}/RESOURCEGROUPS/{rg_name}/PROVIDERS/"
        "MICROSOFT.DATAPROTECTION/BACKUPVAULTS/v1"
    )
    r = api.put(shouting, {"location": "eastus"})
    assert r.status_code == 201, r.text
    assert r.json()["id"] == f"{rg}/{DP}/v1"
    lower = shouting.lower().replace(api.sub.lower(), api.sub)
    assert api.get(lower).status_code == 200
    assert api.get(f"{rg}/{DP}/v1").status_code == 200
    assert api.get(f"{rg}/{DP}/V1").status_code == 200
    r = api.put(f"{shouting}/BACKUPPOLICIES/p1", {"properties": {}})
    assert r.status_code == 200, r.text
    assert api.get(f"{rg}/{DP}/v1/backupPolicies/p1").status_code == 200
    kv_path = f"/Subscriptions/{api.sub}/ResourceGroups/{rg_name}/Providers/microsoft.keyvault"
    assert api.put(f"{kv_path}/vaults/kv-case", {"location": "eastus"}).status_code == 200
    assert api.get(f"{rg}/{KV}/kv-case").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "providers/Microsoft.KeyVault/Vaults/kv-type-case",
        "providers/Microsoft.KeyVault/VAULTS/kv-type-case",
        "providers/Microsoft.DBforPostgreSQL/Servers/pg-type-case",
    ],
)
def test_resource_type_segments_are_case_insensitive(api: Api, rg: str, path: str) -> None:
    """ARM type segments ('vaults', 'servers', 'secrets') are as case-insensitive as the rest."""
    body = {"location": "eastus", "properties": {"fullyQualifiedDomainName": "h"}}
    path = path.replace("type-case", uuid.uuid4().hex[:8])  # key-vault names are global
    r = api.put(f"{rg}/{path}", body)
    assert r.status_code == 200, r.text


def test_secret_segment_is_case_insensitive(api: Api, rg: str) -> None:
    kv_name = f"kv-{uuid.uuid4().hex[:8]}"
    assert api.put(f"{rg}/{KV}/{kv_name}", {"location": "eastus"}).status_code == 200
    r = api.put(f"{rg}/{KV}/{kv_name}/Secrets/s", {"properties": {"value": "v"}})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (DP, {"location": "eastus"}),
        (PG, {"location": "eastus", "properties": {"fullyQualifiedDomainName": "h"}}),
        (KV, {"location": "eastus"}),
    ],
)
def test_resource_group_name_is_case_insensitive_in_lists(
    api: Api, rg: str, kind: str, body: dict[str, Any]
) -> None:
    """A resource reachable as .../resourceGroups/RG-N/... is listed there too."""
    rg_upper = rg.rsplit("/", 1)[0] + "/" + rg.rsplit("/", 1)[1].upper()
    name = f"kv-{uuid.uuid4().hex[:8]}" if kind == KV else "r1"
    assert api.put(f"{rg}/{kind}/{name}", body).status_code in (200, 201)
    assert api.get(f"{rg_upper}/{kind}/{name}").status_code == 200
    assert [v["name"] for v in api.get(f"{rg_upper}/{kind}").json()["value"]] == [name]


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (DP, {}),
        (PG, {"properties": {"fullyQualifiedDomainName": "h"}}),
        (KV, {}),
    ],
)
@pytest.mark.parametrize("region", ["mars", "East Moon", "eastus-9"])
def test_unknown_region_is_400(
    api: Api, rg: str, kind: str, body: dict[str, Any], region: str
) -> None:
    name = "kv-region" if kind == KV else "r1"
    r = api.put(f"{rg}/{kind}/{name}", {**body, "location": region})
    assert r.status_code == 400, r.text
    assert _error_code(r) == "LocationNotAvailableForResourceType"
    assert api.get(f"{rg}/{kind}").json()["value"] == []


def test_unknown_region_for_resource_group(api: Api) -> None:
    r = api.put(api.rg("rg-mars"), {"location": "mars"})
    assert r.status_code == 400
    assert _error_code(r) == "LocationNotAvailableForResourceType"
    assert api.get(api.rg("rg-mars")).status_code == 404


def test_region_display_names_are_normalized(api: Api, rg: str) -> None:
    r = api.put(f"{rg}/{DP}/v", {"location": "West Europe"})
    assert r.status_code == 201
    assert r.json()["location"] == "westeurope"


def test_non_json_body_is_400(api: Api, rg: str) -> None:
    r = api.client.put(
        f"{rg}/{DP}/v",
        headers={**api.admin, "content-type": "application/json"},
        content=b"{not json",
    )
    assert r.status_code == 400
    assert _error_code(r) == "InvalidRequestContent"


def test_unknown_route_is_404_with_an_error_body(api: Api) -> None:
    """Azure clients parse every failure as {"error": {"code", "message"}} (CloudError)."""
    r = api.get(f"/subscriptions/{api.sub}/resourceGroups/default/providers/Microsoft.Nope/x/y")
    assert r.status_code == 404
    assert _error_code(r)


def test_fresh_home_each_time(tmp_path: Path) -> None:
    """A second service on another home bootstraps independently (new admin credentials)."""
    ctx = Context.create(Settings(home=tmp_path, datastore_url="memory://"))
    with TestClient(create_app(ctx, start_workers=False)) as client:
        assert client.get("/healthz").status_code == 200
    creds_file = ctx.settings.credentials_file
    first = json.loads(creds_file.read_text())
    ctx.db.dispose()
    # A restart on the same home keeps the admin and its credentials.
    ctx2 = Context.create(Settings(home=tmp_path, datastore_url="memory://"))
    with TestClient(create_app(ctx2, start_workers=False)) as client:
        bearer(client, client_form(first["clientId"], first["clientSecret"]))
    assert json.loads(creds_file.read_text()) == first
    ctx2.db.dispose()
