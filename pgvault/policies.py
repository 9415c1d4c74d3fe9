"""Backup policies in Azure's shape: backup rules (schedule) and retention rules.

This module stores and validates the policy document; scheduling and retention
sweeps read it. A policy without rules gets Azure's default template: a weekly
full backup kept for three months in the vault store.
"""

from __future__ import annotations

import copy
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pgvault import arm, armstore, jsonbody, retention
from pgvault.errors import BadRequest, Code, Conflict
from pgvault.orm import Base, UTCDateTime

DATASOURCE_TYPE = "Microsoft.DBforPostgreSQL/servers/databases"

DEFAULT_RULES: list[dict[str, Any]] = [
    {
        "name": "BackupWeekly",
        "objectType": "AzureBackupRule",
        "backupParameters": {"objectType": "AzureBackupParams", "backupType": "Full"},
        "dataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": "VaultStore"},
        "trigger": {
            "objectType": "ScheduleBasedTriggerContext",
            "schedule": {
                "repeatingTimeIntervals": ["R/2021-08-15T02:00:00+00:00/P1W"],
                "timeZone": "UTC",
            },
            "taggingCriteria": [
                {
                    "isDefault": True,
                    "taggingPriority": 99,
                    "tagInfo": {"id": "Default_", "tagName": "Default"},
                }
            ],
        },
    },
    {
        "name": "Default",
        "objectType": "AzureRetentionRule",
        "isDefault": True,
        "lifecycles": [
            {
                "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P3M"},
                "sourceDataStore": {
                    "objectType": "DataStoreInfoBase",
                    "dataStoreType": "VaultStore",
                },
                "targetDataStoreCopySettings": [],
            }
        ],
    },
]


class Policy(Base):
    __tablename__ = "backup_policies"
    __table_args__ = (UniqueConstraint("vault_id", "name_key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    vault_id: Mapped[str] = mapped_column(ForeignKey("backup_vaults.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    name_key: Mapped[str] = mapped_column(String(63))
    properties: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


def _validate(properties: dict[str, Any]) -> dict[str, Any]:
    """Check the shape Azure requires; keys are read case-insensitively."""
    props = copy.deepcopy(properties or {})
    rules = jsonbody.get(props, "policyRules") or copy.deepcopy(DEFAULT_RULES)
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise BadRequest("policyRules must be a list of rule objects.", code=Code.BadParameter)
    kinds = [str(jsonbody.get(r, "objectType") or "").lower() for r in rules]
    if "azurebackuprule" not in kinds or "azureretentionrule" not in kinds:
        raise BadRequest(
            "A policy needs at least one AzureBackupRule and one AzureRetentionRule.",
            code=Code.BadParameter,
        )
    types = jsonbody.get(props, "datasourceTypes") or [DATASOURCE_TYPE]
    if not isinstance(types, list) or [str(t).lower() for t in types] != [DATASOURCE_TYPE.lower()]:
        raise BadRequest(f"datasourceTypes must be [{DATASOURCE_TYPE!r}].", code=Code.BadParameter)
    result = {
        "objectType": "BackupPolicy",
        "datasourceTypes": [DATASOURCE_TYPE],
        "policyRules": rules,
    }
    retention.validate_policy(result)
    return result


def put(s: Session, vault_id: str, name: str, properties: dict[str, Any], now: datetime) -> Policy:
    """Create or replace a policy (synchronous, like Azure's PUT)."""
    arm.check_name(name, "backup policy")
    props = _validate(properties)
    policy = s.scalar(
        select(Policy).where(Policy.vault_id == vault_id, Policy.name_key == name.lower())
    )
    if policy is None:
        policy = Policy(
            id=str(uuid.uuid4()),
            vault_id=vault_id,
            name=name,
            name_key=name.lower(),
            properties=props,
            created_at=now,
        )
        s.add(policy)
    else:
        policy.properties = props
        policy.version += 1
    s.flush()
    return policy


def get(s: Session, vault_id: str, name: str) -> Policy:
    return armstore.one(
        s,
        select(Policy).where(Policy.vault_id == vault_id, Policy.name_key == name.lower()),
        f"Backup policy {name!r} not found in this vault. Create it with `pgvault policy create`.",
        code=Code.UserErrorPolicyNotFound,
    )


def get_by_id(s: Session, vault_id: str, policy_id: str) -> Policy:
    """The policy named by its ARM id (it must belong to `vault_id`)."""
    rid = arm.parse(policy_id)
    name = rid.name_of("backupPolicies")
    if not name:
        raise BadRequest(f"{policy_id!r} is not a backup policy id.", code=Code.InvalidResourceId)
    return get(s, vault_id, name)


def list_policies(s: Session, vault_id: str) -> list[Policy]:
    return list(s.scalars(select(Policy).where(Policy.vault_id == vault_id).order_by(Policy.name)))


def delete(s: Session, policy: Policy, in_use: int) -> None:
    if in_use:
        raise Conflict(
            f"Policy {policy.name!r} protects {in_use} backup instance(s); assign them another "
            "policy first.",
            code=Code.UserErrorPolicyInUse,
        )
    s.delete(policy)


def delete_for_vault(s: Session, vault_id: str) -> None:
    """Delete every policy of a vault (the vault is being deleted, empty)."""
    for policy in list_policies(s, vault_id):
        s.delete(policy)


def default_retention(policy: Policy) -> str:
    """The VaultStore delete-after duration of the Default retention rule (ISO 8601)."""
    for rule in policy.properties.get("policyRules", []):
        if str(rule.get("objectType", "")).lower() == "azureretentionrule" and rule.get(
            "isDefault"
        ):
            for lc in rule.get("lifecycles", []):
                duration = lc.get("deleteAfter", {}).get("duration")
                if duration:
                    return str(duration)
    return "P3M"
