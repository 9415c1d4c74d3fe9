"""The Microsoft Graph reads `az role assignment` makes, and the firewall rule
`update-msi-permissions` checks: ids, names and types only, for signed-in callers."""

from __future__ import annotations

from tests.support.apiapp import Api

DP = "providers/Microsoft.DataProtection/backupVaults"
PG = "providers/Microsoft.DBforPostgreSQL/servers"


def test_graph_needs_a_token(api: Api) -> None:
    assert api.client.get("/v1.0/servicePrincipals").status_code == 401
    assert api.client.post("/v1.0/directoryObjects/getByIds", json={"ids": []}).status_code == 401


def test_get_by_ids_gives_azure_types(api: Api) -> None:
    sp = api.principal("graph-sp")
    user = api.principal("graph-user", "user")
    rg = api.rg("graph")
    api.ok("PUT", rg, {"location": "eastus"})
    identity = api.ok("PUT", f"{rg}/{DP}/gv", {"location": "eastus"})["identity"]["principalId"]
    ids = [sp["principalId"], user["principalId"], identity, "00000000-0000-0000-0000-000000000000"]
    found = api.ok("POST", "/v1.0/directoryObjects/getByIds", {"ids": ids, "types": ["user"]})
    types = {o["id"]: o["@odata.type"] for o in found["value"]}
    assert types == {
        sp["principalId"]: "#microsoft.graph.servicePrincipal",
        user["principalId"]: "#microsoft.graph.user",
        identity: "#microsoft.graph.servicePrincipal",
    }
    assert "secret" not in str(found)


def test_lookups_by_client_id_and_user_name(api: Api) -> None:
    sp = api.principal("graph-sp2")
    by_app = api.ok(
        "GET",
        f"/v1.0/servicePrincipals?$filter=servicePrincipalNames/any(c:c eq '{sp['clientId']}')",
    )
    assert [o["id"] for o in by_app["value"]] == [sp["principalId"]]
    api.principal("graph-user2", "user")
    users = api.ok("GET", "/v1.0/users?$filter=userPrincipalName eq 'graph-user2'")
    assert [o["displayName"] for o in users["value"]] == ["graph-user2"]
    # a user is not a service principal, nor the reverse
    assert api.ok("GET", "/v1.0/servicePrincipals?$filter=x eq 'graph-user2'")["value"] == []
    assert api.ok("GET", "/v1.0/users?$filter=x eq 'graph-sp2'")["value"] == []


def test_server_shows_the_azure_services_rule(api: Api) -> None:
    rg = api.rg("fw")
    api.ok("PUT", rg, {"location": "eastus"})
    api.ok("PUT", f"{rg}/{PG}/pg", {"location": "eastus", "properties": {"host": "db.invalid"}})
    rules = api.ok("GET", f"{rg}/{PG}/pg/firewallRules")["value"]
    assert [(r["name"], r["properties"]["startIpAddress"]) for r in rules] == [
        ("AllowAllWindowsAzureIps", "0.0.0.0")
    ]
    assert api.call("GET", f"{rg}/{PG}/pg/firewallRules/other").status_code == 404
    assert api.call("GET", f"{rg}/{PG}/missing/firewallRules").status_code == 404
