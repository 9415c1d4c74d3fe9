"""Backup policy documents: defaults and validation."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pgvault import policies
from pgvault.errors import BadRequest

BACKUP_RULE = copy.deepcopy(policies.DEFAULT_RULES[0])
RETENTION_RULE = copy.deepcopy(policies.DEFAULT_RULES[1])


@pytest.mark.parametrize(
    "props", [{}, None, {"policyRules": None}, {"policyRules": []}, {"objectType": "BackupPolicy"}]
)
def test_default_rules_when_none_given(props: dict[str, Any] | None) -> None:
    out = policies._validate(props)  # type: ignore[arg-type]
    assert out == {
        "objectType": "BackupPolicy",
        "datasourceTypes": [policies.DATASOURCE_TYPE],
        "policyRules": policies.DEFAULT_RULES,
    }


def test_defaults_are_copies() -> None:
    out = policies._validate({})
    out["policyRules"][0]["name"] = "changed"
    assert policies.DEFAULT_RULES[0]["name"] == "BackupWeekly"


def test_given_rules_are_kept_and_input_not_mutated() -> None:
    retention = copy.deepcopy(RETENTION_RULE)
    retention["lifecycles"][0]["deleteAfter"]["duration"] = "P30D"
    props = {"policyRules": [BACKUP_RULE, retention]}
    before = copy.deepcopy(props)
    out = policies._validate(props)
    assert out["policyRules"] == [BACKUP_RULE, retention]
    assert props == before
    assert out["policyRules"][1] is not retention


def test_object_types_are_case_insensitive() -> None:
    backup = dict(BACKUP_RULE, objectType="azurebackuprule")
    retention = dict(RETENTION_RULE, objectType="AZURERETENTIONRULE")
    assert policies._validate({"policyRules": [backup, retention]})["policyRules"] == [
        backup,
        retention,
    ]


@pytest.mark.parametrize(
    "rules",
    [
        pytest.param([BACKUP_RULE], id="no-retention-rule"),
        pytest.param([RETENTION_RULE], id="no-backup-rule"),
        pytest.param([BACKUP_RULE, BACKUP_RULE], id="two-backup-rules"),
        pytest.param([dict(BACKUP_RULE, objectType="Other"), RETENTION_RULE], id="unknown-type"),
        pytest.param([BACKUP_RULE, RETENTION_RULE, "x"], id="non-object-rule"),
        pytest.param({"rule": BACKUP_RULE}, id="not-a-list"),
        pytest.param("rules", id="string"),
    ],
)
def test_invalid_rules(rules: object) -> None:
    with pytest.raises(BadRequest) as info:
        policies._validate({"policyRules": rules})
    assert info.value.status == 400
    assert info.value.code == "BadParameter"


@pytest.mark.parametrize(
    "types",
    [
        [policies.DATASOURCE_TYPE],
        [policies.DATASOURCE_TYPE.upper()],
        None,
    ],
)
def test_datasource_types_accepted(types: list[str] | None) -> None:
    out = policies._validate({"datasourceTypes": types})
    assert out["datasourceTypes"] == [policies.DATASOURCE_TYPE]


@pytest.mark.parametrize(
    "types",
    [
        ["Microsoft.Compute/virtualMachines"],
        [policies.DATASOURCE_TYPE, policies.DATASOURCE_TYPE],
        [1],
        [None],
        "Microsoft.DBforPostgreSQL/servers/databases",
    ],
)
def test_datasource_types_rejected(types: object) -> None:
    """Anything but the one PostgreSQL datasource type is a 400, never an internal error."""
    with pytest.raises(BadRequest) as info:
        policies._validate({"datasourceTypes": types})
    assert info.value.code == "BadParameter"


def test_property_names_are_case_insensitive() -> None:
    """Azure bodies are case-insensitive: 'PolicyRules' must not be silently ignored."""
    with pytest.raises(BadRequest):
        policies._validate({"PolicyRules": [BACKUP_RULE]})
