"""Identity and access through the API: tokens, sign-in and lockout, principals, role
assignments and definitions in Azure's shape, the audit log, and secrets never echoed.

The service runs on a frozen clock, so expiry and lockout are tested by moving time, not by
waiting.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from pgvault import identity
from pgvault.clock import FrozenClock
from tests.support.apiapp import AUTHZ, Api

DP = "providers/Microsoft.DataProtection/backupVaults"
KV = "providers/Microsoft.KeyVault/vaults"


@pytest.fixture(scope="module")
def api_clock() -> FrozenClock:
    """Expiry and lockout are tested by moving this clock, not by waiting."""
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture(scope="module")
def api(api: Api) -> Api:
    """The shared app, with the resource groups the scope tests assign roles on."""
    for name in ("team-a", "team-b", "team-ab"):
        api.ok("PUT", api.rg(name), {"location": "eastus"})
    return api


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _error(r: Any) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"}, body
    return dict(body["error"])


# -- 401: no token, bad tokens, expired, revoked ---------------------------------------------

PROTECTED = [
    ("GET", "/pgvault/principals"),
    ("PUT", "/pgvault/principals/someone"),
    ("GET", f"{AUTHZ}/roleAssignments"),
    ("PUT", f"{AUTHZ}/roleAssignments/3f1c0d5e-2b7a-4c9e-8d61-0a4b5c6d7e8f"),
    ("GET", f"{AUTHZ}/roleDefinitions"),
    ("GET", "/subscriptions"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_no_token_is_401(api: Api, method: str, path: str) -> None:
    r = api.call(method, path, {}, headers={})
    assert r.status_code == 401
    assert _error(r)["code"] == "AuthenticationFailed"
    assert "Bearer" in _error(r)["message"]


def _forge(key: bytes, claims: Any) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    body = b64(json.dumps(claims).encode())
    return f"{body}.{b64(hmac.new(key, body.encode(), hashlib.sha256).digest())}"


def _bad_tokens(api: Api) -> dict[str, str]:
    good = api.admin["Authorization"].split(" ", 1)[1]
    body, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    now = int(api.clock.now().timestamp())
    elevated = _forge(b"x", {**claims, "sub": str(uuid.uuid4())}).split(".")[0]
    return {
        "garbage": "garbage",
        "three-parts": "a.b.c",
        "empty-signature": f"{body}.",
        "flipped-signature": f"{body}.{sig[:-2]}{'A' if sig[-2] != 'A' else 'B'}{sig[-1]}",
        "other-key": _forge(b"k" * 32, claims),
        "elevated-claims": f"{elevated}.{sig}",  # someone else's claims, the real signature
        "no-expiry": _forge(api.ctx.token_key, {k: v for k, v in claims.items() if k != "exp"}),
        "string-expiry": _forge(api.ctx.token_key, {**claims, "exp": str(now + 60)}),
        "not-an-object": _forge(api.ctx.token_key, [claims]),
        "unknown-subject": _forge(api.ctx.token_key, {**claims, "sub": str(uuid.uuid4())}),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "garbage",
        "three-parts",
        "empty-signature",
        "flipped-signature",
        "other-key",
        "elevated-claims",
        "no-expiry",
        "string-expiry",
        "not-an-object",
        "unknown-subject",
    ],
)
def test_bad_token_is_401(api: Api, kind: str) -> None:
    token = _bad_tokens(api)[kind]
    for method, path in PROTECTED:
        r = api.call(method, path, {}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, (kind, method, path, r.text)
        assert _error(r)["code"] == "InvalidAuthenticationToken"
        assert token not in r.text


def test_expired_token_is_401(api: Api) -> None:
    props = api.principal(_unique("expiring"))
    headers = api.sign_in(props)
    assert api.call("GET", f"{AUTHZ}/roleDefinitions", headers=headers).status_code == 200
    lifetime = timedelta(seconds=api.ctx.settings.token_lifetime_seconds)
    api.clock.advance(lifetime - timedelta(seconds=1))
    try:
        assert api.call("GET", f"{AUTHZ}/roleDefinitions", headers=headers).status_code == 200
        api.clock.advance(timedelta(seconds=2))
        r = api.call("GET", f"{AUTHZ}/roleDefinitions", headers=headers)
        assert r.status_code == 401
        assert _error(r)["code"] == "InvalidAuthenticationToken"
        # a new sign-in works again
        assert (
            api.call("GET", f"{AUTHZ}/roleDefinitions", headers=api.sign_in(props)).status_code
            == 200
        )
    finally:
        api.clock.advance(-(lifetime + timedelta(seconds=1)))


def test_revoke_a_token_in_the_form(api: Api) -> None:
    props = api.principal(_unique("revoker"))
    first, second = api.sign_in(props), api.sign_in(props)
    token = first["Authorization"].split(" ", 1)[1]
    r = api.client.post("/oauth2/revoke", data={"token": token})
    assert r.status_code == 200
    assert token not in r.text
    r = api.call("GET", f"{AUTHZ}/roleDefinitions", headers=first)
    assert r.status_code == 401
    assert _error(r)["code"] == "InvalidAuthenticationToken"
    # only that token: the principal's other token still works
    assert api.call("GET", f"{AUTHZ}/roleDefinitions", headers=second).status_code == 200
    # revoking twice is harmless
    assert api.client.post("/oauth2/revoke", data={"token": token}).status_code == 200


def test_revoke_the_calling_token(api: Api) -> None:
    headers = api.sign_in(api.principal(_unique("self-revoker")))
    assert api.client.post("/oauth2/revoke", headers=headers).status_code == 200
    assert api.call("GET", f"{AUTHZ}/roleDefinitions", headers=headers).status_code == 401
    # revoking it again (with itself) is harmless; nothing else is possible with it
    assert api.client.post("/oauth2/revoke", headers=headers).status_code == 200
    assert api.call("GET", "/subscriptions", headers=headers).status_code == 401


@pytest.mark.parametrize("token", ["garbage", "a.b"])
def test_revoke_needs_a_valid_token(api: Api, token: str) -> None:
    r = api.client.post("/oauth2/revoke", data={"token": token})
    assert r.status_code == 401
    assert api.client.post("/oauth2/revoke").status_code == 401


# -- sign-in: users, lockout ----------------------------------------------------------------


def test_user_signs_in_with_a_password(api: Api) -> None:
    name = _unique("alice")
    props = api.principal(name, "user")
    assert props["principalType"] == "User"
    headers = api.sign_in(props, name=name)
    assert api.call("GET", f"{AUTHZ}/roleDefinitions", headers=headers).status_code == 200

    r = api.token(grant_type="password", username=name, password="wrong")
    assert r.status_code == 401
    assert _error(r)["code"] == "InvalidUserCredentials"
    assert "access_token" not in r.text
    # the same error for a name that does not exist
    r = api.token(grant_type="password", username=_unique("nobody"), password="wrong")
    assert r.status_code == 401
    assert _error(r)["code"] == "InvalidUserCredentials"
    # a user has a password, not client credentials for the password grant's name
    r = api.token(grant_type="password", username=name)
    assert r.status_code == 400


def test_service_principal_cannot_use_the_password_grant(api: Api) -> None:
    name = _unique("robot")
    props = api.principal(name)
    r = api.token(grant_type="password", username=name, password=props["secret"])
    assert r.status_code == 401
    assert _error(r)["code"] == "InvalidUserCredentials"


def test_lockout_after_five_failures(api: Api) -> None:
    name = _unique("bob")
    props = api.principal(name, "user")
    for _ in range(identity.MAX_FAILURES):
        r = api.token(grant_type="password", username=name, password="guess")
        assert r.status_code == 401
    # locked: even the right password is refused, without checking it
    for password in (props["secret"], "guess"):
        r = api.token(grant_type="password", username=name, password=password)
        assert r.status_code == 429, r.text
        assert _error(r)["code"] == "TooManyFailedLogins"
        assert "access_token" not in r.text
        assert props["secret"] not in r.text
    # others are not locked out
    other = _unique("carol")
    other_props = api.principal(other, "user")
    api.sign_in(other_props, name=other)
    # the lock ends
    api.clock.advance(identity.LOCKOUT + timedelta(seconds=1))
    try:
        api.sign_in(props, name=name)
    finally:
        api.clock.advance(-(identity.LOCKOUT + timedelta(seconds=1)))


def test_success_resets_the_failure_count(api: Api) -> None:
    name = _unique("dave")
    props = api.principal(name, "user")
    for _ in range(identity.MAX_FAILURES - 1):
        assert api.token(grant_type="password", username=name, password="x").status_code == 401
    api.sign_in(props, name=name)
    for _ in range(identity.MAX_FAILURES - 1):
        assert api.token(grant_type="password", username=name, password="x").status_code == 401
    api.sign_in(props, name=name)


def test_client_lockout(api: Api) -> None:
    props = api.principal(_unique("bot"))
    for _ in range(identity.MAX_FAILURES):
        r = api.token(
            grant_type="client_credentials", client_id=props["clientId"], client_secret="nope"
        )
        assert r.status_code == 401
        assert _error(r)["code"] == "InvalidClientCredentials"
    r = api.token(
        grant_type="client_credentials",
        client_id=props["clientId"],
        client_secret=props["secret"],
    )
    assert r.status_code == 429
    assert _error(r)["code"] == "TooManyFailedLogins"


def test_unknown_names_lock_out_too(api: Api) -> None:
    """Guessing at a name that does not exist looks like guessing at one that does."""
    name = _unique("ghost")
    for _ in range(identity.MAX_FAILURES):
        assert api.token(grant_type="password", username=name, password="x").status_code == 401
    assert api.token(grant_type="password", username=name, password="x").status_code == 429


# -- principals -----------------------------------------------------------------------------


def test_principal_lifecycle(api: Api) -> None:
    name = _unique("svc")
    created = api.ok(
        "PUT", f"/pgvault/principals/{name}", {"properties": {"principalType": "service-principal"}}
    )
    assert created["id"] == f"/pgvault/principals/{name}"
    assert created["name"] == name
    props = created["properties"]
    assert props["principalType"] == "ServicePrincipal"
    assert props["enabled"] is True
    assert uuid.UUID(props["principalId"])
    assert uuid.UUID(props["clientId"])
    assert len(props["secret"]) >= 32  # shown once, at creation
    for ref in (name, props["principalId"], props["clientId"]):
        got = api.ok("GET", f"/pgvault/principals/{ref}")
        assert got["properties"]["principalId"] == props["principalId"]
        assert "secret" not in got["properties"]
    listed = api.ok("GET", "/pgvault/principals")["value"]
    mine = [p for p in listed if p["name"] == name]
    assert len(mine) == 1
    assert "secret" not in mine[0]["properties"]
    assert props["secret"] not in json.dumps(listed)

    r = api.call(
        "PUT", f"/pgvault/principals/{name}", {"properties": {"principalType": "service-principal"}}
    )
    assert r.status_code == 409
    assert _error(r)["code"] == "PrincipalExists"


@pytest.mark.parametrize(
    ("name", "body", "code"),
    [
        ("ok-name", {"properties": {"principalType": "robot"}}, "BadParameter"),
        ("ok-name", {"properties": {"principalType": "ManagedIdentity"}}, "BadParameter"),
        ("bad name", {"properties": {"principalType": "user"}}, "InvalidResourceName"),
        ("-lead", {"properties": {"principalType": "user"}}, "InvalidResourceName"),
    ],
)
def test_bad_principal_is_400(api: Api, name: str, body: dict[str, Any], code: str) -> None:
    r = api.call("PUT", f"/pgvault/principals/{name}", body)
    assert r.status_code == 400, r.text
    assert _error(r)["code"] == code


def test_deleted_principal_token_stops_working(api: Api) -> None:
    name = _unique("leaver")
    props = api.principal(name)
    api.assign(api.rg("team-a"), "Reader", props["principalId"])
    headers = api.sign_in(props)
    assert api.call("GET", api.rg("team-a"), headers=headers).status_code == 200
    assert api.call("DELETE", f"/pgvault/principals/{name}").status_code == 200
    r = api.call("GET", api.rg("team-a"), headers=headers)
    assert r.status_code == 401
    assert _error(r)["code"] == "InvalidAuthenticationToken"
    # its assignments went with it
    rows = api.ok("GET", f"{api.rg('team-a')}{AUTHZ}/roleAssignments")["value"]
    assert props["principalId"] not in {a["properties"]["principalId"] for a in rows}
    assert api.call("GET", f"/pgvault/principals/{name}").status_code == 404
    r = api.token(
        grant_type="client_credentials", client_id=props["clientId"], client_secret=props["secret"]
    )
    assert r.status_code == 401


def test_disabled_principal_token_stops_working(api: Api) -> None:
    name = _unique("paused")
    props = api.principal(name)
    api.assign(api.rg("team-a"), "Reader", props["principalId"])
    headers = api.sign_in(props)
    assert api.call("GET", api.rg("team-a"), headers=headers).status_code == 200
    # (no API disables a principal yet; the flag is what sign-in and every call check)
    with api.ctx.db.session() as s:
        principal = s.get(identity.Principal, props["principalId"])
        assert principal is not None
        principal.enabled = False
    try:
        r = api.call("GET", api.rg("team-a"), headers=headers)
        assert r.status_code == 401
        assert _error(r)["code"] == "InvalidAuthenticationToken"
        r = api.token(
            grant_type="client_credentials",
            client_id=props["clientId"],
            client_secret=props["secret"],
        )
        assert r.status_code == 401
        assert api.ok("GET", f"/pgvault/principals/{name}")["properties"]["enabled"] is False
    finally:
        with api.ctx.db.session() as s:
            principal = s.get(identity.Principal, props["principalId"])
            assert principal is not None
            principal.enabled = True
    assert api.call("GET", api.rg("team-a"), headers=headers).status_code == 200


def test_vault_identity_cannot_be_deleted_as_a_principal(api: Api) -> None:
    vault = api.ok("PUT", f"{api.rg('team-a')}/{DP}/{_unique('v')}", {"location": "eastus"})
    principal_id = vault["identity"]["principalId"]
    got = api.ok("GET", f"/pgvault/principals/{principal_id}")
    assert got["properties"]["principalType"] == "ManagedIdentity"
    assert got["properties"]["clientId"] is None
    r = api.call("DELETE", f"/pgvault/principals/{principal_id}")
    assert r.status_code == 409
    assert _error(r)["code"] == "ManagedIdentityCannotBeDeleted"


def test_vault_identity_goes_with_its_vault(api: Api) -> None:
    name = _unique("v")
    vault = api.ok("PUT", f"{api.rg('team-a')}/{DP}/{name}", {"location": "eastus"})
    principal_id = vault["identity"]["principalId"]
    api.assign(api.rg("team-a"), "Reader", f"vault:{name}")
    assert api.call("DELETE", f"{api.rg('team-a')}/{DP}/{name}").status_code == 200
    rows = api.ok("GET", f"{AUTHZ}/roleAssignments")["value"]
    assert principal_id not in {a["properties"]["principalId"] for a in rows}
    assert api.call("GET", f"/pgvault/principals/{principal_id}").status_code == 404


# -- role assignments -----------------------------------------------------------------------


def _role_id(api: Api, name: str) -> str:
    found = api.ok("GET", f"{AUTHZ}/roleDefinitions", None)["value"]
    return next(d["name"] for d in found if d["properties"]["roleName"] == name)


def test_assignment_in_azure_shape(api: Api) -> None:
    props = api.principal(_unique("shape"))
    scope = api.rg("team-a")
    reader = _role_id(api, "Reader")
    name = str(uuid.uuid4())
    body = {
        "properties": {
            "roleDefinitionId": f"/subscriptions/{api.sub}{AUTHZ}/roleDefinitions/{reader}",
            "principalId": props["principalId"],
        }
    }
    created = api.ok("PUT", f"{scope}{AUTHZ}/roleAssignments/{name}", body, 201)
    assert created["id"] == f"{scope}{AUTHZ}/roleAssignments/{name}"
    assert created["name"] == name
    assert created["type"] == "Microsoft.Authorization/roleAssignments"
    p = created["properties"]
    assert p["scope"] == scope
    assert p["roleDefinitionId"] == f"{scope}{AUTHZ}/roleDefinitions/{reader}"
    assert p["roleDefinitionName"] == "Reader"
    assert p["principalId"] == props["principalId"]
    assert p["principalType"] == "ServicePrincipal"
    assert p["createdOn"].endswith("Z")
    assert p["createdBy"]

    got = api.ok("GET", f"{scope}{AUTHZ}/roleAssignments/{name}")
    assert got == created
    # the same PUT again is the same assignment: an update (200), as ARM answers
    assert api.ok("PUT", f"{scope}{AUTHZ}/roleAssignments/{name}", body, 200)["name"] == name


@pytest.mark.parametrize(
    "role_ref",
    ["Reader", "reader", "ROLE_ID", "/providers/Microsoft.Authorization/roleDefinitions/ROLE_ID"],
)
def test_assignment_role_by_name_or_id(api: Api, role_ref: str) -> None:
    props = api.principal(_unique("byref"))
    ref = role_ref.replace("ROLE_ID", _role_id(api, "Reader"))
    created = api.assign(api.rg("team-b"), ref, props["principalId"])
    assert created["properties"]["roleDefinitionName"] == "Reader"


@pytest.mark.parametrize("ref", ["name", "clientId"])
def test_assignee_by_name_or_client_id(api: Api, ref: str) -> None:
    name = _unique("byname")
    props = api.principal(name)
    created = api.assign(api.rg("team-b"), "Reader", name if ref == "name" else props["clientId"])
    assert created["properties"]["principalId"] == props["principalId"]


@pytest.mark.parametrize(
    ("name", "body", "status", "code"),
    [
        (
            "not-a-guid",
            {"properties": {"roleDefinitionId": "Reader", "principalId": "admin"}},
            400,
            "InvalidRoleAssignmentId",
        ),
        (
            "GUID",
            {"properties": {"roleDefinitionId": "Superuser", "principalId": "admin"}},
            404,
            "RoleDefinitionDoesNotExist",
        ),
        (
            "GUID",
            {"properties": {"roleDefinitionId": "Reader", "principalId": "nobody-at-all"}},
            404,
            "PrincipalNotFound",
        ),
        ("GUID", {"properties": {"principalId": "admin"}}, 400, "InvalidRequestContent"),
        ("GUID", {"properties": {"roleDefinitionId": "Reader"}}, 400, "InvalidRequestContent"),
        ("GUID", {"properties": "Reader"}, 400, "InvalidRequestContent"),
        ("GUID", {}, 400, "InvalidRequestContent"),
        ("GUID", None, 400, "InvalidRequestContent"),
    ],
)
def test_bad_assignment(api: Api, name: str, body: Any, status: int, code: str) -> None:
    name = str(uuid.uuid4()) if name == "GUID" else name
    r = api.call("PUT", f"{api.rg('team-b')}{AUTHZ}/roleAssignments/{name}", body)
    assert r.status_code == status, r.text
    assert _error(r)["code"] == code


def test_assignment_id_cannot_be_reused_elsewhere(api: Api) -> None:
    props = api.principal(_unique("reuse"))
    name = str(uuid.uuid4())
    body = {"properties": {"roleDefinitionId": "Reader", "principalId": props["principalId"]}}
    api.ok("PUT", f"{api.rg('team-a')}{AUTHZ}/roleAssignments/{name}", body, 201)
    for scope, role in ((api.rg("team-b"), "Reader"), (api.rg("team-a"), "Backup Reader")):
        body = {"properties": {"roleDefinitionId": role, "principalId": props["principalId"]}}
        r = api.call("PUT", f"{scope}{AUTHZ}/roleAssignments/{name}", body)
        assert r.status_code == 409, r.text
        assert _error(r)["code"] == "RoleAssignmentUpdateNotPermitted"
    # the same principal, role and scope under a new name
    r = api.call(
        "PUT",
        f"{api.rg('team-a')}{AUTHZ}/roleAssignments/{uuid.uuid4()}",
        {"properties": {"roleDefinitionId": "Reader", "principalId": props["principalId"]}},
    )
    assert r.status_code == 409
    assert _error(r)["code"] == "RoleAssignmentExists"


def test_list_assignments_and_filters(api: Api) -> None:
    props = api.principal(_unique("lister"))
    pid = props["principalId"]
    team_a = api.rg("team-a")
    vault = f"{team_a}/{DP}/{_unique('v')}"
    api.ok("PUT", vault, {"location": "eastus"})
    at_rg = api.assign(team_a, "Reader", pid)["name"]
    at_vault = api.assign(vault, "Backup Operator", pid)["name"]
    beside = api.assign(api.rg("team-ab"), "Reader", pid)["name"]

    def names(path: str, filter_: str | None = None) -> set[str]:
        params = {"$filter": filter_} if filter_ else {}
        r = api.call("GET", f"{path}{AUTHZ}/roleAssignments", params=params)
        assert r.status_code == 200, r.text
        for a in r.json()["value"]:
            assert set(a) == {"id", "name", "type", "properties"}
            assert a["id"].endswith(f"/roleAssignments/{a['name']}")
        return {a["name"] for a in r.json()["value"]}

    admin_root = names("", "atScope()")
    assert admin_root  # the admin's Owner assignment at `/`
    # at the RG: what applies there (root) and what is inside it; not the sibling 'team-ab'
    in_rg = names(team_a)
    assert {at_rg, at_vault} <= in_rg
    assert admin_root <= in_rg
    assert beside not in in_rg
    assert names(team_a, "atScope()") & {at_rg, at_vault, beside} == {at_rg}
    assert names(team_a, f"assignedTo('{pid}')") == {at_rg, at_vault}
    assert names(team_a, f"principalId eq '{pid}'") == {at_rg, at_vault}
    assert names(team_a, f"atScope() and assignedTo('{pid}')") == {at_rg}
    assert names(vault, f"assignedTo('{pid}')") == {at_rg, at_vault}
    assert names("", f"assignedTo('{pid}')") == {at_rg, at_vault, beside}
    # by name: assignee references resolve the same way as in a PUT
    assert names("", f"assignedTo('{props['clientId']}')") == {at_rg, at_vault, beside}


def test_delete_assignment(api: Api) -> None:
    props = api.principal(_unique("deleted"))
    scope = api.rg("team-a")
    name = api.assign(scope, "Reader", props["principalId"])["name"]
    headers = api.sign_in(props)
    assert api.call("GET", scope, headers=headers).status_code == 200
    gone = api.ok("DELETE", f"{scope}{AUTHZ}/roleAssignments/{name}")
    assert gone["name"] == name
    assert gone["properties"]["principalId"] == props["principalId"]
    r = api.call("GET", scope, headers=headers)
    assert r.status_code == 403
    assert _error(r)["code"] == "AuthorizationFailed"
    r = api.call("DELETE", f"{scope}{AUTHZ}/roleAssignments/{name}")
    assert r.status_code == 404
    assert _error(r)["code"] == "RoleAssignmentNotFound"
    r = api.call("GET", f"{scope}{AUTHZ}/roleAssignments/{name}")
    assert r.status_code == 404


def test_root_assignment_by_id(api: Api) -> None:
    """What Azure SDKs do with an id: GET it (`/providers/.../roleAssignments/X` at the root)."""
    props = api.principal(_unique("rooted"))
    created = api.assign("", "Backup Reader", props["principalId"])
    assert created["id"] == f"{AUTHZ}/roleAssignments/{created['name']}"
    assert api.ok("GET", created["id"]) == created
    definition = api.ok("GET", created["properties"]["roleDefinitionId"])
    assert definition["properties"]["roleName"] == "Backup Reader"
    assert api.ok("DELETE", created["id"])["name"] == created["name"]
    assert api.call("GET", created["id"]).status_code == 404


def test_root_delete_reaches_assignments_below(api: Api) -> None:
    """The CLI deletes by id at `/`; a root Owner may delete any assignment."""
    props = api.principal(_unique("below"))
    name = api.assign(api.rg("team-b"), "Reader", props["principalId"])["name"]
    assert api.ok("DELETE", f"{AUTHZ}/roleAssignments/{name}")["name"] == name


def test_resource_group_owner_cannot_touch_assignments_above_or_beside(api: Api) -> None:
    """A team-a Owner sees the admin's root Owner assignment in its list (it applies there),
    but must not be able to delete it, nor one in team-ab, through its own scope."""
    props = api.principal(_unique("rg-owner"))
    api.assign(api.rg("team-a"), "Owner", props["principalId"])
    owner = api.sign_in(props)
    other = api.principal(_unique("neighbour"))
    beside = api.assign(api.rg("team-ab"), "Reader", other["principalId"])["name"]

    team_a = api.rg("team-a")
    listed = api.call("GET", f"{team_a}{AUTHZ}/roleAssignments", headers=owner).json()["value"]
    root_rows = [a for a in listed if a["properties"]["scope"] == "/"]
    assert root_rows, "the admin's Owner assignment at / applies to team-a"
    for target in [a["name"] for a in root_rows] + [beside]:
        for method in ("GET", "DELETE"):
            r = api.call(method, f"{team_a}{AUTHZ}/roleAssignments/{target}", headers=owner)
            assert r.status_code == 404, (method, target, r.text)
            assert _error(r)["code"] == "RoleAssignmentNotFound"
        r = api.call("DELETE", f"{AUTHZ}/roleAssignments/{target}", headers=owner)
        assert r.status_code == 403
        assert "Microsoft.Authorization/roleAssignments/delete" in _error(r)["message"]
    # everything is still there and the admin is still in charge
    assert (
        api.call("GET", f"{api.rg('team-ab')}{AUTHZ}/roleAssignments/{beside}").status_code == 200
    )
    for row in root_rows:
        assert api.call("GET", f"{AUTHZ}/roleAssignments/{row['name']}").status_code == 200
    assert api.call("GET", api.rg("team-b")).status_code == 200
    # within team-a it is in charge: it can grant and remove there
    made = api.assign(team_a, "Reader", other["principalId"])["name"]
    r = api.call("DELETE", f"{team_a}{AUTHZ}/roleAssignments/{made}", headers=owner)
    assert r.status_code == 200
    # and cannot grant beside it
    body = {"properties": {"roleDefinitionId": "Owner", "principalId": props["principalId"]}}
    r = api.call(
        "PUT", f"{api.rg('team-ab')}{AUTHZ}/roleAssignments/{uuid.uuid4()}", body, headers=owner
    )
    assert r.status_code == 403
    r = api.call("PUT", f"{AUTHZ}/roleAssignments/{uuid.uuid4()}", body, headers=owner)
    assert r.status_code == 403


def test_vault_assignee(api: Api) -> None:
    name = _unique("vault")
    vault = api.ok("PUT", f"{api.rg('team-a')}/{DP}/{name}", {"location": "eastus"})
    kv = _unique("kv")
    kv_id = f"{api.rg('team-a')}/{KV}/{kv}"
    api.ok("PUT", kv_id, {"location": "eastus"})
    created = api.assign(kv_id, "Key Vault Secrets User", f"vault:{name}")
    assert created["properties"]["principalId"] == vault["identity"]["principalId"]
    # a managed identity is a service principal in Azure's shapes
    assert created["properties"]["principalType"] == "ServicePrincipal"
    assert created["properties"]["scope"] == kv_id
    listed = api.ok(
        "GET",
        f"{kv_id}{AUTHZ}/roleAssignments?$filter=assignedTo('vault:{name}')",
    )["value"]
    assert [a["name"] for a in listed] == [created["name"]]


def test_vault_assignee_must_be_unambiguous(api: Api) -> None:
    name = _unique("twin")
    for rg in ("team-a", "team-b"):
        api.ok("PUT", f"{api.rg(rg)}/{DP}/{name}", {"location": "eastus"})
    for ref, count in ((f"vault:{name}", "2"), (f"vault:{_unique('none')}", "0")):
        body = {"properties": {"roleDefinitionId": "Reader", "principalId": ref}}
        r = api.call("PUT", f"{api.rg('team-a')}{AUTHZ}/roleAssignments/{uuid.uuid4()}", body)
        assert r.status_code == 400, r.text
        assert _error(r)["code"] == "PrincipalNotFound"
        assert _error(r)["message"].startswith(count)


# -- role definitions -----------------------------------------------------------------------


def test_role_definitions(api: Api) -> None:
    everything = api.ok("GET", f"{AUTHZ}/roleDefinitions")["value"]
    names = {d["properties"]["roleName"] for d in everything}
    assert {
        "Owner",
        "Contributor",
        "Reader",
        "Backup Contributor",
        "Backup Operator",
        "Backup Reader",
        "Storage Blob Data Contributor",
        "Key Vault Secrets User",
        "PostgreSQL Backup Target",
    } <= names
    for f in ("roleName eq 'Reader'", "roleName eq 'reader'", "ROLENAME EQ 'Reader'"):
        found = api.ok("GET", f"{AUTHZ}/roleDefinitions?$filter={f}")["value"]
        assert len(found) == 1, f
        reader = found[0]
        assert reader["id"] == f"{AUTHZ}/roleDefinitions/{reader['name']}"
        assert reader["type"] == "Microsoft.Authorization/roleDefinitions"
        p = reader["properties"]
        assert p["roleName"] == "Reader"
        assert p["type"] == "BuiltInRole"
        assert p["permissions"] == [
            {"actions": ["*/read"], "notActions": [], "dataActions": [], "notDataActions": []}
        ]
        assert p["assignableScopes"] == ["/"]
    assert api.ok("GET", f"{AUTHZ}/roleDefinitions?$filter=roleName eq 'Nope'")["value"] == []
    # at a scope: ids carry it, as Azure's do
    scope = api.rg("team-a")
    found = api.ok("GET", f"{scope}{AUTHZ}/roleDefinitions?$filter=roleName eq 'Reader'")["value"]
    assert found[0]["id"] == f"{scope}{AUTHZ}/roleDefinitions/{reader['name']}"
    one = api.ok("GET", f"{scope}{AUTHZ}/roleDefinitions/{reader['name']}")
    assert one["properties"]["roleName"] == "Reader"
    r = api.call("GET", f"{scope}{AUTHZ}/roleDefinitions/{uuid.uuid4()}")
    assert r.status_code == 404
    assert _error(r)["code"] == "RoleDefinitionDoesNotExist"


def test_anyone_signed_in_can_read_the_role_catalogue_but_not_assignments(api: Api) -> None:
    headers = api.sign_in(api.principal(_unique("nobody")))
    assert api.call("GET", f"{AUTHZ}/roleDefinitions", headers=headers).status_code == 200
    assert api.call("GET", "/subscriptions", headers=headers).status_code == 200
    r = api.call("GET", f"{AUTHZ}/roleAssignments", headers=headers)
    assert r.status_code == 403
    assert "Microsoft.Authorization/roleAssignments/read" in _error(r)["message"]
    r = api.call("GET", "/pgvault/principals", headers=headers)
    assert r.status_code == 403
    assert "'pgvault/principals/read'" in _error(r)["message"]


def test_custom_role(api: Api) -> None:
    role_id = str(uuid.uuid4())
    role_name = _unique("Policy Editor")
    body = {
        "properties": {
            "roleName": role_name,
            "description": "policies only",
            "permissions": [
                {"actions": ["Microsoft.DataProtection/backupVaults/backupPolicies/*"]}
            ],
        }
    }
    created = api.ok("PUT", f"/subscriptions/{api.sub}{AUTHZ}/roleDefinitions/{role_id}", body, 201)
    assert created["name"] == role_id
    assert created["properties"]["type"] == "CustomRole"
    props = api.principal(_unique("editor"))
    api.assign(api.rg("team-a"), role_name, props["principalId"])
    headers = api.sign_in(props)
    vault = f"{api.rg('team-a')}/{DP}/{_unique('v')}"
    api.ok("PUT", vault, {"location": "eastus"})
    r = api.call("PUT", f"{vault}/backupPolicies/p", {"properties": {}}, headers=headers)
    assert r.status_code == 200, r.text
    r = api.call("DELETE", vault, headers=headers)
    assert r.status_code == 403
    # another custom role may not take the name
    r = api.call("PUT", f"/x{AUTHZ}/roleDefinitions/{uuid.uuid4()}", body)
    assert r.status_code == 409
    assert _error(r)["code"] == "RoleDefinitionWithSameNameExists"


@pytest.mark.parametrize(
    ("role_id", "props", "status", "code"),
    [
        (
            "OWNER_ID",
            {"roleName": "Mine", "permissions": [{"actions": []}]},
            409,
            "RoleDefinitionExists",
        ),
        (
            "READER_ID",
            {"roleName": "Mine", "permissions": [{"actions": ["*"]}]},
            409,
            "RoleDefinitionExists",
        ),
        (
            "GUID",
            {"roleName": "Owner", "permissions": [{"actions": ["*"]}]},
            409,
            "RoleDefinitionExists",
        ),
        ("not-a-guid", {"roleName": "Mine", "permissions": []}, 400, "InvalidRoleDefinitionId"),
        (
            "GUID",
            {"roleName": "Mine", "permissions": {"actions": ["*"]}},
            400,
            "InvalidRequestContent",
        ),
        ("GUID", {"roleName": "Mine", "permissions": "*"}, 400, "InvalidRequestContent"),
        ("GUID", {"roleName": "Mine", "permissions": [{"actions": "*"}]}, 400, "BadRequest"),
        ("GUID", {"permissions": []}, 400, "InvalidRequestContent"),
    ],
)
def test_bad_custom_role(
    api: Api, role_id: str, props: dict[str, Any], status: int, code: str
) -> None:
    role_id = (
        role_id.replace("OWNER_ID", _role_id(api, "Owner"))
        .replace("READER_ID", _role_id(api, "Reader"))
        .replace("GUID", str(uuid.uuid4()))
    )
    r = api.call("PUT", f"/x{AUTHZ}/roleDefinitions/{role_id}", {"properties": props})
    assert r.status_code == status, r.text
    assert _error(r)["code"] == code
    # built-in roles are untouched
    owner = api.ok("GET", f"{AUTHZ}/roleDefinitions?$filter=roleName eq 'Owner'")["value"]
    assert owner[0]["properties"]["permissions"][0]["actions"] == ["*"]


def test_resource_group_owner_cannot_define_roles(api: Api) -> None:
    """A custom role applies wherever it is assigned, so defining one takes the root."""
    props = api.principal(_unique("rg-definer"))
    api.assign(api.rg("team-b"), "Owner", props["principalId"])
    headers = api.sign_in(props)
    body = {"properties": {"roleName": _unique("Mine"), "permissions": [{"actions": ["*"]}]}}
    r = api.call(
        "PUT", f"{api.rg('team-b')}{AUTHZ}/roleDefinitions/{uuid.uuid4()}", body, headers=headers
    )
    assert r.status_code == 403
    err = _error(r)
    assert err["code"] == "AuthorizationFailed"
    assert "'Microsoft.Authorization/roleDefinitions/write' over scope '/'" in err["message"]


# -- the audit log --------------------------------------------------------------------------


def test_audit_records_writes(api: Api) -> None:
    vault = f"{api.rg('team-a')}/{DP}/{_unique('audited')}"
    api.ok("PUT", vault, {"location": "eastus"})
    api.ok("GET", vault)
    events = [e for e in api.audit() if e["resourceId"] == vault]
    assert len(events) == 1, events  # the write, not the read
    e = events[0]
    assert e["operationName"]["value"] == "Microsoft.DataProtection/backupVaults/write"
    assert e["authorization"] == {
        "action": "Microsoft.DataProtection/backupVaults/write",
        "scope": vault,
    }
    assert e["caller"] == "admin"
    assert e["httpRequest"]["method"] == "PUT"
    assert e["status"]["value"] == "Succeeded"
    assert e["subStatus"]["value"] == "201"
    assert e["eventTimestamp"].endswith("Z")
    assert uuid.UUID(e["eventDataId"])


def test_audit_records_failed_writes(api: Api) -> None:
    vault = f"{api.rg('team-a')}/{DP}/{_unique('nolocation')}"
    assert api.call("PUT", vault, {}).status_code == 400
    events = [e for e in api.audit() if e["resourceId"] == vault]
    assert [e["status"]["value"] for e in events] == ["Failed"]


def test_audit_records_denied_calls(api: Api) -> None:
    name = _unique("snoop")
    props = api.principal(name)
    api.assign(api.rg("team-a"), "Reader", props["principalId"])
    headers = api.sign_in(props)
    vault = f"{api.rg('team-b')}/{DP}/{_unique('target')}"
    assert api.call("PUT", vault, {"location": "eastus"}, headers=headers).status_code == 403
    assert api.call("GET", vault, headers=headers).status_code == 403  # denied reads too
    denied = [e for e in api.audit("status eq 'Denied'") if e["resourceId"] == vault]
    assert sorted(e["httpRequest"]["method"] for e in denied) == ["GET", "PUT"]
    for e in denied:
        assert e["caller"] == name
        assert e["claims"]["oid"] == props["principalId"]
        assert e["status"]["value"] == "Denied"
        assert e["subStatus"]["value"] == "403"
    # $filter on status returns only that outcome
    assert {e["status"]["value"] for e in api.audit("status eq 'Denied'")} == {"Denied"}


def test_audit_records_unauthenticated_calls_and_failed_sign_ins(api: Api) -> None:
    vault = f"{api.rg('team-a')}/{DP}/{_unique('anon')}"
    r = api.call("PUT", vault, {"location": "eastus"}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    events = [e for e in api.audit() if e["resourceId"] == vault]
    assert [(e["status"]["value"], e["caller"]) for e in events] == [("Denied", None)]

    user = _unique("fumbler")
    api.token(grant_type="password", username=user, password="wrong")
    sign_ins = [
        e
        for e in api.audit("status eq 'Denied'")
        if e["resourceId"].startswith("/oauth2/") and e["subStatus"]["value"] == "401"
    ]
    assert sign_ins
    # successful sign-ins are not writes
    before = len([e for e in api.audit() if e["resourceId"].startswith("/oauth2/")])
    r = api.token(
        grant_type="client_credentials",
        client_id=api.admin_creds["clientId"],
        client_secret=api.admin_creds["clientSecret"],
    )
    assert r.status_code == 200
    after = len([e for e in api.audit() if e["resourceId"].startswith("/oauth2/")])
    assert after == before


def test_audit_since_filter_and_top(api: Api) -> None:
    api.clock.advance(timedelta(seconds=5))
    since = api.clock.now()
    vault = f"{api.rg('team-a')}/{DP}/{_unique('late')}"
    api.ok("PUT", vault, {"location": "eastus"})
    stamp = since.strftime("%Y-%m-%dT%H:%M:%SZ")
    recent = api.audit(f"eventTimestamp ge '{stamp}'")
    assert vault in {e["resourceId"] for e in recent}
    for e in recent:
        assert datetime.fromisoformat(e["eventTimestamp"].replace("Z", "+00:00")) >= since
    r = api.call(
        "GET",
        f"/subscriptions/{api.sub}/providers/Microsoft.Insights/eventtypes/management/values",
        params={"$top": "1"},
    )
    assert len(r.json()["value"]) <= 1
    r = api.call(
        "GET",
        f"/subscriptions/{api.sub}/providers/Microsoft.Insights/eventtypes/management/values",
        params={"$filter": "eventTimestamp ge 'yesterday'"},
    )
    assert r.status_code == 400
    assert _error(r)["code"] == "InvalidFilter"


def test_audit_log_needs_a_role(api: Api) -> None:
    props = api.principal(_unique("rg-reader"))
    api.assign(api.rg("team-a"), "Reader", props["principalId"])
    headers = api.sign_in(props)
    path = f"/subscriptions/{api.sub}/providers/Microsoft.Insights/eventtypes/management/values"
    r = api.call("GET", path, headers=headers)
    assert r.status_code == 403
    assert "Microsoft.Insights/eventtypes/values/read" in _error(r)["message"]


# -- secrets and tokens are never echoed ----------------------------------------------------


def test_no_secret_or_token_in_any_response(api: Api) -> None:
    name = _unique("secretive")
    created = api.call(
        "PUT", f"/pgvault/principals/{name}", {"properties": {"principalType": "user"}}
    )
    password = created.json()["properties"]["secret"]
    token = api.sign_in(created.json()["properties"], name=name)["Authorization"].split()[1]
    admin_token = api.admin["Authorization"].split()[1]
    admin_secret = api.admin_creds["clientSecret"]
    kv = _unique("kv")
    kv_id = f"{api.rg('team-a')}/{KV}/{kv}"
    api.ok("PUT", kv_id, {"location": "eastus"})
    secret_value = "Password=" + uuid.uuid4().hex
    api.assign(api.rg("team-a"), "Reader", name)
    user = {"Authorization": f"Bearer {token}"}

    responses = [
        api.call("PUT", f"{kv_id}/secrets/conn", {"properties": {"value": secret_value}}),
        api.call("GET", f"{kv_id}/secrets/conn"),
        api.call("GET", f"{kv_id}/secrets"),
        api.call("GET", "/pgvault/principals"),
        api.call("GET", f"/pgvault/principals/{name}"),
        api.call("GET", "/pgvault/principals/admin"),
        api.call("GET", f"{AUTHZ}/roleAssignments"),
        api.call("GET", f"{AUTHZ}/roleDefinitions"),
        api.call("GET", f"{api.rg('team-a')}{AUTHZ}/roleAssignments", headers=user),
        api.call("PUT", f"{api.rg('team-b')}/{DP}/x", {"location": "eastus"}, headers=user),
        api.call("GET", "/subscriptions", headers={"Authorization": f"Bearer {token}x"}),
        api.call("GET", "/subscriptions", headers={"Authorization": f"Bearer {admin_secret}"}),
        api.token(grant_type="password", username=name, password=password + "x"),
        api.token(grant_type="client_credentials", client_id=name, client_secret=admin_secret),
        api.token(grant_type="password", username=name),
        api.client.post("/oauth2/revoke", data={"token": token + "x"}),
        api.call("PUT", f"/pgvault/principals/{name}", {"properties": {"principalType": "user"}}),
    ]
    responses.append(
        api.client.get(
            f"/subscriptions/{api.sub}/providers/Microsoft.Insights/eventtypes/management/values",
            headers=api.admin,
        )
    )
    for r in responses:
        for leaked in (password, token, admin_token, admin_secret, secret_value):
            assert leaked not in r.text, (r.request.method, r.request.url, r.status_code)
            assert leaked not in json.dumps(dict(r.headers))


def test_secrets_are_hashed_at_rest(api: Api) -> None:
    props = api.principal(_unique("hashed"))
    with api.ctx.db.session() as s:
        row = s.scalar(
            select(identity.Principal).where(identity.Principal.id == props["principalId"])
        )
        assert row is not None
        assert row.secret_hash
        assert props["secret"] not in row.secret_hash
        assert row.secret_hash.startswith("$argon2")
