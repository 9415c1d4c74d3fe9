"""Fuzz the whole API with schemathesis, from the app's own OpenAPI document.

Every operation gets generated requests (path parameters, query strings, form and JSON
bodies), sent in-process with the admin's bearer token (so they reach the handlers, not just
the 401), and checked with schemathesis' `not_a_server_error` (no 5xx) and
`max_response_time` (its default limit, 10 s).

CI runs a fixed, derandomized subset: about 30 generated examples per operation plus
schemathesis' coverage cases, some 2,900 requests in all (~40 s on two idle cores). Run the
full fuzz, e.g. 20,000 examples in total, and/or with fresh randomness::

    PGVAULT_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/unit/test_fuzz_api.py
    PGVAULT_FUZZ_EXAMPLES=20000 PGVAULT_FUZZ_SEED=random .venv/bin/python -m pytest \\
        tests/unit/test_fuzz_api.py

Two steers make the cases reach past the first 404 or 400:

- path parameters are drawn four times in five from names that exist (the real subscription,
  resource group ``default``, vault ``v1`` with policy ``p1`` and instance ``bi1``, a key
  vault, a storage account...);
- bodies (JSON, and the token form) are either what the schema allows (for JSON anything:
  the routes read bodies as Azure does, case-insensitively, so the OpenAPI says little), a
  valid body for that operation, or one with one to three parts replaced by arbitrary JSON
  or removed.

Nothing here reaches a real PostgreSQL or object store, or waits on a connect timeout: the
one registered server is 127.0.0.1 port 1 (refused at once), the vault's identity is never
granted the secret (so validation stops before connecting), storage-account bodies are not
steered (a fuzzed backend would point anywhere), and no workers run the queued jobs.
"""

from __future__ import annotations

import math
import os
import tempfile
import uuid
from collections.abc import Iterator
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import max_response_time, not_a_server_error

from pgvault import identity
from pgvault.api.app import create_app
from pgvault.config import Settings
from pgvault.context import Context
from tests.support.apiapp import admin_form, bearer, in_process

TOTAL_EXAMPLES = int(os.environ.get("PGVAULT_FUZZ_EXAMPLES", "2200"))
DERANDOMIZE = os.environ.get("PGVAULT_FUZZ_SEED", "fixed") != "random"

RG = "/subscriptions/{sub}/resourceGroups/{rg}"
P = RG + "/providers"
V = P + "/Microsoft.DataProtection/backupVaults/{vault}"
BI = V + "/backupInstances/{bi}"
SERVERS = P + "/Microsoft.DBforPostgreSQL/servers"
KV = P + "/Microsoft.KeyVault/vaults"
AUTHZ = "/providers/Microsoft.Authorization"

# Filled by the `service` fixture, read by the hooks while cases are drawn.
KNOWN: dict[str, list[str]] = {}  # path parameter -> names that exist
ONLY: dict[tuple[str, str], dict[str, list[str]]] = {}  # per operation: what it may touch
BODIES: dict[tuple[str, str], Any] = {}  # per operation: a valid JSON body
STATE: dict[str, Any] = {}
CALLS: dict[str, int] = {}  # cases sent, per operation


def _key(context: Any) -> tuple[str, str]:
    op = context.operation
    return (op.method.upper(), op.path) if op is not None else ("", "")


def flatmap_path_parameters(
    context: Any, path_parameters: dict[str, Any] | None
) -> st.SearchStrategy[Any]:
    if not path_parameters:
        return st.just(path_parameters)
    only = ONLY.get(_key(context), {})

    def steer(name: str, generated: Any) -> st.SearchStrategy[Any]:
        known = only.get(name, KNOWN.get(name, []))
        if not known:
            return st.just(generated)
        # four times in five a name that exists, else the generated one
        return st.integers(0, 4).flatmap(
            lambda i: st.sampled_from(known) if i else st.just(generated)
        )

    return st.fixed_dictionaries({k: steer(k, v) for k, v in path_parameters.items()})


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document (keys of objects, indexes of lists)."""
    found = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += _paths(v, (*prefix, i))
    return found


def _mutated(template: Any) -> st.SearchStrategy[Any]:
    """`template` with one to three places replaced by arbitrary JSON or removed."""
    places = _paths(template)
    if not places:
        return st.just(template)
    change = st.tuples(st.sampled_from(places), st.booleans(), JSON_VALUES)

    def apply(changes: list[tuple[tuple[Any, ...], bool, Any]]) -> Any:
        doc = deepcopy(template)
        for path, remove, value in changes:
            parent = doc
            for step in path[:-1]:
                try:
                    parent = parent[step]
                except (KeyError, IndexError, TypeError):
                    break
            else:
                try:
                    if remove and isinstance(parent, dict):
                        parent.pop(path[-1], None)
                    else:
                        parent[path[-1]] = value
                except (IndexError, TypeError):
                    pass
        return doc

    return st.lists(change, min_size=1, max_size=3).map(apply)


def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
    template = BODIES.get(_key(context))
    if template is None:
        return st.just(body)
    return st.one_of(st.just(body), st.just(deepcopy(template)), _mutated(template))


def _openapi() -> dict[str, Any]:
    """The app's OpenAPI document; it depends on no state (an unused service builds it)."""
    with tempfile.TemporaryDirectory(prefix="pgvault-openapi-") as home:
        unused = Context.create(Settings(home=Path(home), datastore_url="memory://"))
        try:
            return dict(create_app(unused, start_workers=False).openapi())
        finally:
            unused.db.dispose()


# Loaded at import so that every operation is its own test id: `from_asgi` would start the
# app at collection, and `schemathesis.pytest.from_fixture` fails on pytest 9.2 ('Function'
# object has no attribute '_nodeid'). The cases go to the fixture's app (`app=` below).
schema = schemathesis.openapi.from_dict(_openapi())
schema.hook(flatmap_path_parameters)
schema.hook(flatmap_body)
PER_OPERATION = max(1, math.ceil(TOTAL_EXAMPLES / max(1, len(schema))))


@pytest.fixture(scope="module", autouse=True)
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The app the cases are sent to, with resources whose names the fuzzer may use."""
    home = tmp_path_factory.mktemp("fuzz")
    with in_process(home) as (ctx, client):  # runs the start-up
        yield from _prepare(ctx, client.app, client, home)
    print(f"\nfuzz: {sum(CALLS.values())} cases over {len(CALLS)} operations")
    for registry in (KNOWN, ONLY, BODIES, STATE, CALLS):
        registry.clear()


def _prepare(ctx: Context, app: Any, client: TestClient, home: Path) -> Iterator[None]:
    headers = bearer(client, admin_form(ctx))

    def ok(method: str, path: str, body: Any = None) -> Any:
        r = client.request(method, path, headers=headers, json=body)
        assert r.status_code in (200, 201, 202), (method, path, r.text)
        return r.json() if r.content else None

    sub = ok("GET", "/subscriptions")["value"][0]["subscriptionId"]
    rg = f"/subscriptions/{sub}/resourceGroups/default"
    dp = f"{rg}/providers/Microsoft.DataProtection/backupVaults"
    suffix = uuid.uuid4().hex[:6]
    kv, account = f"kvfuzz{suffix}", f"safuzz{suffix}"
    server_id = f"{rg}/providers/Microsoft.DBforPostgreSQL/servers/pg1"
    kv_id = f"{rg}/providers/Microsoft.KeyVault/vaults/{kv}"
    account_id = f"{rg}/providers/Microsoft.Storage/storageAccounts/{account}"

    vault = {"location": "eastus", "tags": {"team": "fuzz"}, "properties": {}}
    ok("PUT", f"{dp}/v1", vault)
    ok("PUT", f"{dp}/v-del", vault)
    vault["properties"] = ok("GET", f"{dp}/v1")["properties"]
    ok("PUT", f"{dp}/v1/backupPolicies/p1", {"properties": {}})
    policy = {"properties": ok("GET", f"{dp}/v1/backupPolicies/p1")["properties"]}
    server = {
        "location": "eastus",
        "properties": {"fullyQualifiedDomainName": "127.0.0.1", "port": 1},
    }
    ok("PUT", server_id, server)
    ok("PUT", kv_id, {"location": "eastus"})
    secret = {
        "properties": {
            "value": "Server=127.0.0.1;Port=1;Database=db1;User Id=u;Password=p;",
            "contentType": "text/plain",
        }
    }
    uri = ok("PUT", f"{kv_id}/secrets/s1", secret)["properties"]["secretUri"]
    backend = {"type": "local", "path": str(home / "blobs")}
    ok("PUT", account_id, {"location": "eastus", "properties": {"backend": backend}})
    ok("PUT", f"{account_id}/blobServices/default/containers/cont1")

    def instance(database: str) -> dict[str, Any]:
        return {
            "properties": {
                "friendlyName": database,
                "dataSourceInfo": {
                    "objectType": "Datasource",
                    "resourceID": f"{server_id}/databases/{database}",
                    "datasourceType": "Microsoft.DBforPostgreSQL/servers/databases",
                },
                "policyInfo": {"policyId": f"{dp}/v1/backupPolicies/p1"},
                "datasourceAuthCredentials": {
                    "objectType": "SecretStoreBasedAuthCredentials",
                    "secretStoreResource": {"uri": uri, "secretStoreType": "AzureKeyVault"},
                },
                "objectType": "BackupInstance",
            }
        }

    for name in ("bi1", "bi2", "bi-del"):
        ok("PUT", f"{dp}/v1/backupInstances/{name}", instance(f"db-{name}"))
    victim = ok("PUT", "/pgvault/principals/fuzz-del", {"properties": {"principalType": "user"}})
    robot = ok(
        "PUT", "/pgvault/principals/fuzz-sp", {"properties": {"principalType": "service-principal"}}
    )
    definitions = ok("GET", f"{AUTHZ}/roleDefinitions")["value"]
    reader = next(d["name"] for d in definitions if d["properties"]["roleName"] == "Reader")
    custom_role = str(uuid.uuid4())
    assignment = {
        "properties": {
            "roleDefinitionId": f"{AUTHZ}/roleDefinitions/{reader}",
            "principalId": "fuzz-sp",
        }
    }
    existing = ok("PUT", f"{rg}{AUTHZ}/roleAssignments/{uuid.uuid4()}", assignment)["name"]
    new_assignments = [str(uuid.uuid4()), str(uuid.uuid4())]

    KNOWN.update(
        sub=[sub],
        rg=["default"],
        vault=["v1"],
        bi=["bi1", "bi2"],
        kv=[kv],
        account=[account],
        name=["p1", "pg1", kv, account, "s1", "cont1", "fuzz-sp"],
        scope=[rg.lstrip("/"), f"subscriptions/{sub}", f"{dp.lstrip('/')}/v1"],
        role_id=[reader, custom_role],
    )
    # Deletions only reach what is there to be deleted (or what refuses to go).
    ONLY.update(
        {
            ("DELETE", BI): {"bi": ["bi-del"]},
            ("DELETE", V): {"vault": ["v-del", "v1"]},
            ("DELETE", KV + "/{name}"): {"name": []},
            ("DELETE", "/pgvault/principals/{name}"): {"name": ["fuzz-del", victim["name"]]},
            # role assignments are named by GUIDs
            ("PUT", AUTHZ + "/roleAssignments/{name}"): {"name": new_assignments},
            ("PUT", "/{scope}" + AUTHZ + "/roleAssignments/{name}"): {"name": new_assignments},
            ("GET", AUTHZ + "/roleAssignments/{name}"): {"name": [existing]},
            ("GET", "/{scope}" + AUTHZ + "/roleAssignments/{name}"): {"name": [existing]},
            ("DELETE", AUTHZ + "/roleAssignments/{name}"): {"name": [existing]},
            ("DELETE", "/{scope}" + AUTHZ + "/roleAssignments/{name}"): {"name": [existing]},
        }
    )
    restore = {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": str(uuid.uuid4()),
        "sourceDataStoreType": "VaultStore",
        "restoreTargetInfo": {
            "objectType": "RestoreTargetInfo",
            "recoveryOption": "FailIfExists",
            "restoreLocation": "eastus",
            "datasourceInfo": {"resourceID": f"{server_id}/databases/restored"},
            "datasourceAuthCredentials": {
                "objectType": "SecretStoreBasedAuthCredentials",
                "secretStoreResource": {"uri": uri, "secretStoreType": "AzureKeyVault"},
            },
        },
    }
    BODIES.update(
        {
            # form bodies: wrong secrets (lockouts follow), never the admin's
            ("POST", "/oauth2/token"): {
                "grant_type": "client_credentials",
                "client_id": robot["properties"]["clientId"],
                "client_secret": "not-the-secret",
                "username": "fuzz-del",
                "password": "not-the-password",
            },
            ("PUT", RG): {"location": "eastus"},
            ("PUT", V): vault,
            ("PATCH", V): vault,
            ("PUT", V + "/backupPolicies/{name}"): policy,
            ("PUT", SERVERS + "/{name}"): server,
            ("PUT", KV + "/{name}"): {"location": "eastus"},
            ("PUT", KV + "/{kv}/secrets/{name}"): secret,
            ("PUT", "/pgvault/principals/{name}"): {"properties": {"principalType": "user"}},
            ("PUT", AUTHZ + "/roleAssignments/{name}"): assignment,
            ("PUT", "/{scope}" + AUTHZ + "/roleAssignments/{name}"): assignment,
            ("PUT", "/{scope}" + AUTHZ + "/roleDefinitions/{role_id}"): {
                "properties": {
                    "roleName": "Fuzz Reader",
                    "description": "reads",
                    "permissions": [{"actions": ["*/read"], "notActions": [], "dataActions": []}],
                }
            },
            ("PUT", BI): instance("db-new"),
            ("POST", V + "/validateForBackup"): {"backupInstance": instance("db-new")},
            ("POST", BI + "/backup"): {
                "backupRuleOptions": {
                    "ruleName": "BackupDaily",
                    "triggerOption": {"retentionTagOverride": "Default"},
                }
            },
            ("POST", BI + "/validateRestore"): {"restoreRequestObject": restore},
            ("POST", BI + "/restore"): restore,
            ("POST", BI + "/rehydrate"): {
                "recoveryPointId": str(uuid.uuid4()),
                "rehydrationPriority": "Standard",
                "rehydrationRetentionDuration": "P1D",
            },
        }
    )
    with ctx.db.session() as s:
        admin = identity.find_principal(s, "admin")
    STATE.update(app=app, ctx=ctx, admin=admin, headers=headers)
    yield


def _headers_for(case: Any) -> dict[str, str]:
    """The admin's token; a throwaway one where the call could revoke the token it carries."""
    if case.path == "/oauth2/revoke":
        ctx: Context = STATE["ctx"]
        token = identity.issue_token(ctx.token_key, STATE["admin"], ctx.clock.now(), 600)
        return {"Authorization": f"Bearer {token}"}
    return dict(STATE["headers"])


@schema.parametrize()
@settings(
    max_examples=PER_OPERATION,
    derandomize=DERANDOMIZE,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
def test_api(case: Any) -> None:
    CALLS[case.operation.label] = CALLS.get(case.operation.label, 0) + 1
    case.call_and_validate(
        app=STATE["app"],
        headers=_headers_for(case),
        checks=[not_a_server_error, max_response_time],
    )


# -- what the fuzzer found, kept as plain regression tests ----------------------------------


def _client() -> TestClient:
    return TestClient(STATE["app"], raise_server_exceptions=False)


def _v1() -> str:
    rg = f"/subscriptions/{KNOWN['sub'][0]}/resourceGroups/default"
    return f"{rg}/providers/Microsoft.DataProtection/backupVaults/v1"


@pytest.mark.parametrize(
    "properties",
    [
        {"securitySettings": None},
        {"securitySettings": {"softDeleteSettings": None}},
        {"securitySettings": {"softDeleteSettings": {"state": 5}}},
        {"securitySettings": {"immutabilitySettings": []}},
        {"storageSettings": None},
        {"storageSettings": [1]},
        {"featureSettings": 7},
        {"monitoringSettings": {"azureMonitorAlertSettings": "x"}},
    ],
)
@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_vault_settings_of_the_wrong_shape_are_400(method: str, properties: Any) -> None:
    """Was 500 (AttributeError in vaults.check_settings) for nulls; other shapes were stored
    and broke later reads of the vault's settings."""
    vault = _v1()
    r = _client().request(
        method,
        vault,
        headers=STATE["headers"],
        json={"location": "eastus", "properties": properties},
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "InvalidRequestContent"


@pytest.mark.parametrize("skip", ["9223372036854775808", "-1", "x"])
def test_job_list_skip_out_of_range_is_400(skip: str) -> None:
    """`$skip=2**63` was 500 (OverflowError binding it in SQLite)."""
    vault = _v1()
    r = _client().get(f"{vault}/backupJobs", params={"$skip": skip}, headers=STATE["headers"])
    assert r.status_code == 400, r.text


@pytest.mark.parametrize(
    "options",
    [
        {"ruleName": "BackupDaily", "triggerOption": {"retentionTagOverride": [None]}},
        {"ruleName": "BackupDaily", "triggerOption": {"retentionTagOverride": 5}},
        {"ruleName": ["BackupDaily"]},
        {"ruleName": {"name": "BackupDaily"}},
    ],
)
def test_backup_options_of_the_wrong_type_are_400(options: Any) -> None:
    """A list as retentionTagOverride was 500 (AttributeError in retention._override)."""
    r = _client().post(
        f"{_v1()}/backupInstances/bi1/backup",
        headers=STATE["headers"],
        json={"backupRuleOptions": options},
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "InvalidRequestContent"
