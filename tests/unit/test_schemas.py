"""Request-body models: Azure's names in any case, extras ignored, errors naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from pgvault.errors import BadRequest
from pgvault.schemas.access import RoleDefinitionBody
from pgvault.schemas.base import parse
from pgvault.schemas.dataprotection import AdhocBackupBody, InstanceBody, VaultBody
from pgvault.schemas.resources import StorageAccountBody

INSTANCE: dict[str, Any] = {
    "properties": {
        "objectType": "BackupInstance",
        "dataSourceInfo": {"resourceID": "/subscriptions/s/x/databases/d"},
        "policyInfo": {"policyId": "/p"},
        "datasourceAuthCredentials": {"secretStoreResource": {"uri": "http://kv/s"}},
    }
}


def _recase(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k.upper(): _recase(v) for k, v in obj.items()}
    return obj


def test_keys_any_case_nested_and_extras_ignored() -> None:
    spec = parse(InstanceBody, _recase(INSTANCE)).to_spec()
    assert spec.database_id == "/subscriptions/s/x/databases/d"
    assert spec.policy_id == "/p"
    assert spec.secret_uri == "http://kv/s"
    assert spec.friendly_name is None


def test_exact_key_wins_over_other_casing() -> None:
    body = parse(VaultBody, {"LOCATION": "westus", "location": "eastus"})
    assert body.location == "eastus"


def test_vault_settings_keep_only_what_was_sent_under_azure_names() -> None:
    body = parse(
        VaultBody,
        {"location": "eastus", "properties": {"securitysettings": {"SOFTDELETESETTINGS": {}}}},
    )
    assert body.settings() == {"securitySettings": {"softDeleteSettings": {}}}


@pytest.mark.parametrize(
    ("data", "target"),
    [
        ({}, "location"),
        ({"location": 3}, "location"),
        ({"location": "e", "properties": {"storageSettings": [{"type": 1}]}}, None),
        ({"location": "e", "properties": {"securitySettings": None}}, None),
        (
            {"location": "e", "properties": {"securitySettings": {"softDeleteSettings": None}}},
            "properties.securitySettings.softDeleteSettings",
        ),
        (
            {
                "location": "e",
                "properties": {
                    "securitySettings": {"softDeleteSettings": {"retentionDurationInDays": True}}
                },
            },
            "properties.securitySettings.softDeleteSettings.retentionDurationInDays",
        ),
        ([], None),
    ],
)
def test_errors_are_400_naming_the_field(data: Any, target: str | None) -> None:
    with pytest.raises(BadRequest) as info:
        parse(VaultBody, data)
    assert info.value.code == "InvalidRequestContent"
    if target is not None:
        assert info.value.target == target
        assert target in info.value.message


def test_storage_backend_options_pass_through() -> None:
    body = parse(
        StorageAccountBody,
        {"location": "e", "properties": {"backend": {"TYPE": "s3", "bucket": "b", "Region": "r"}}},
    )
    assert body.backend.type == "s3"
    assert body.backend.options() == {"bucket": "b", "Region": "r"}


def test_adhoc_backup_options() -> None:
    body = parse(
        AdhocBackupBody,
        {"backupruleoptions": {"RuleName": "R", "triggerOption": {"retentionTagOverride": "T"}}},
    )
    assert (body.rule_name, body.retention_tag) == ("R", "T")
    assert parse(AdhocBackupBody, {}).rule_name is None


def test_role_definition_first_permission_block() -> None:
    body = parse(RoleDefinitionBody, {"properties": {"roleName": "Mine", "permissions": []}})
    assert body.properties.granted() == {"actions": [], "notActions": [], "dataActions": []}
