"""ARM resource ids and resource-name validation."""

from __future__ import annotations

import pytest

from pgvault import arm
from pgvault.errors import BadRequest

SUB = "00000000-0000-0000-0000-000000000001"


def test_id_builders() -> None:
    assert arm.rg_id(SUB, "rg") == f"/subscriptions/{SUB}/resourceGroups/rg"
    assert arm.vault_id(SUB, "rg", "v") == (
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.DataProtection/backupVaults/v"
    )
    assert arm.server_id(SUB, "rg", "pg") == (
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/servers/pg"
    )
    assert (
        arm.database_id(SUB, "rg", "pg", "db") == arm.server_id(SUB, "rg", "pg") + "/databases/db"
    )
    assert arm.keyvault_id(SUB, "rg", "kv") == (
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv"
    )
    assert arm.storage_account_id(SUB, "rg", "sa") == (
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa"
    )
    assert arm.container_id(SUB, "rg", "sa", "c") == (
        arm.storage_account_id(SUB, "rg", "sa") + "/blobServices/default/containers/c"
    )
    assert arm.provider_id(SUB, "rg", "Ns", "a", "1", "b", "2") == (
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Ns/a/1/b/2"
    )


def test_parse_round_trips_builders() -> None:
    rid = arm.parse(arm.database_id(SUB, "rg", "pg", "db"))
    assert rid.subscription == SUB
    assert rid.resource_group == "rg"
    assert rid.namespace == arm.PG
    assert rid.parts == (("servers", "pg"), ("databases", "db"))
    assert rid.name_of("servers") == "pg"
    assert rid.name_of("databases") == "db"
    assert rid.name_of("backupVaults") is None


@pytest.mark.parametrize(
    "text",
    [
        f"/SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/rg/PROVIDERS/Microsoft.DBforPostgreSQL/SERVERS/pg",
        f"/subscriptions/{SUB}/resourcegroups/rg/providers/Microsoft.DBforPostgreSQL/servers/pg",
        f"subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/servers/pg/",
        f"  /Subscriptions/{SUB}/ResourceGroups/rg/Providers/Microsoft.DBforPostgreSQL/Servers/pg ",
    ],
)
def test_parse_is_case_insensitive_on_fixed_segments(text: str) -> None:
    rid = arm.parse(text)
    assert rid.subscription == SUB
    assert rid.resource_group == "rg"
    assert rid.namespace == "Microsoft.DBforPostgreSQL"
    assert rid.name_of("servers") == "pg"
    assert rid.name_of("SERVERS") == "pg"


def test_parse_keeps_name_casing() -> None:
    rid = arm.parse(f"/subscriptions/{SUB}/resourceGroups/MyRG/providers/P/t/MyName")
    assert rid.resource_group == "MyRG"
    assert rid.name_of("t") == "MyName"


def test_parse_subscription_and_group_only() -> None:
    rid = arm.parse(f"/subscriptions/{SUB}")
    assert (rid.subscription, rid.resource_group, rid.namespace, rid.parts) == (SUB, None, None, ())
    rid = arm.parse(f"/subscriptions/{SUB}/resourceGroups/rg")
    assert (rid.resource_group, rid.namespace, rid.parts) == ("rg", None, ())


@pytest.mark.parametrize(
    "text",
    [
        "",
        "/",
        "/subscriptions",
        "/tenants/x/resourceGroups/rg",
        "not an id",
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/P/servers",
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/P/servers/pg/databases",
    ],
)
def test_parse_rejects_non_ids(text: str) -> None:
    with pytest.raises(BadRequest) as info:
        arm.parse(text)
    assert info.value.code == "InvalidResourceId"
    assert info.value.status == 400


@pytest.mark.parametrize(
    "name",
    ["a", "A", "0", "vault1", "My-Vault_2.prod", "a" * 63, "x.y", "a-", "a_"],
)
def test_check_name_accepts(name: str) -> None:
    assert arm.check_name(name, "backup vault") == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "..",
        ".",
        "../etc",
        "a/b",
        "/a",
        "a b",
        " a",
        "a\\b",
        "-a",
        "_a",
        ".a",
        "a.",
        "a" * 64,
        "naïve",
        "a?b",
        "a#b",
        "a%2Fb",
        "a\nb",
        "a\n",
        "a\t",
        None,
        123,
    ],
)
def test_check_name_rejects(name: object) -> None:
    with pytest.raises(BadRequest) as info:
        arm.check_name(name, "backup vault")  # type: ignore[arg-type]
    assert info.value.code == "InvalidResourceName"
    assert info.value.target == "backup vault"
    assert info.value.status == 400


@pytest.mark.parametrize("name", ["abc", "kv-1", "a1b", "a" * 24, "0ab"])
def test_check_global_name_accepts(name: str) -> None:
    assert arm.check_global_name(name, "key vault") == name


@pytest.mark.parametrize(
    "name", ["ab", "a" * 25, "Abc", "ab_c", "ab.c", "-ab", "ab-", "a b", "..", "a/b", "", "abc\n"]
)
def test_check_global_name_rejects(name: str) -> None:
    with pytest.raises(BadRequest) as info:
        arm.check_global_name(name, "key vault")
    assert info.value.code == "InvalidResourceName"


@pytest.mark.parametrize("name", ["abc", "my-container", "a" * 63, "0-1"])
def test_check_container_name_accepts(name: str) -> None:
    assert arm.check_container_name(name) == name


@pytest.mark.parametrize(
    "name", ["ab", "a" * 64, "My", "a--b", "-ab", "ab-", "a_b", "a.b", "a/b", "", "abc\n"]
)
def test_check_container_name_rejects(name: str) -> None:
    with pytest.raises(BadRequest) as info:
        arm.check_container_name(name)
    assert info.value.code == "InvalidResourceName"
    assert info.value.target == "container"
