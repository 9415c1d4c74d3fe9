"""Backup vaults: a region, a datastore area, and a system-assigned managed identity.

The vault's objects live in the datastore under `vaults/{vault.id}/`, keyed by the
immutable id rather than the name, so a vault re-created with the same name never
sees the old one's data.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pgvault import arm, armstore, identity, regions, tenancy
from pgvault.armstore import ArmResource
from pgvault.errors import BadRequest, Code, Conflict
from pgvault.orm import Base

DEFAULT_PROPERTIES: dict[str, Any] = {
    "storageSettings": [{"datastoreType": "VaultStore", "type": "LocallyRedundant"}],
    "securitySettings": {
        "softDeleteSettings": {"state": "On", "retentionDurationInDays": 14},
        "immutabilitySettings": {"state": "Disabled"},
    },
    "featureSettings": {
        "crossRegionRestoreSettings": {"state": "Disabled"},
        "crossSubscriptionRestoreSettings": {"state": "Enabled"},
    },
    "monitoringSettings": {"azureMonitorAlertSettings": {"alertsForAllJobFailures": "Enabled"}},
}


class Vault(ArmResource, Base):
    __tablename__ = "backup_vaults"

    name: Mapped[str] = mapped_column(String(63))
    principal_id: Mapped[str] = mapped_column(String(36))
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    properties: Mapped[dict[str, Any]] = mapped_column(JSON)

    @property
    def arm_id(self) -> str:
        return arm.vault_id(self.subscription_id, self.resource_group, self.name)

    @property
    def datastore_prefix(self) -> str:
        return f"vaults/{self.id}"


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in patch.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _state(props: dict[str, Any], *path: str) -> str:
    cur: Any = props
    for key in path:
        cur = cur.get(key, {}) if isinstance(cur, dict) else {}
    return str(cur or "").lower()


_IRREVERSIBLE = (
    (("securitySettings", "softDeleteSettings", "state"), "alwayson", "Soft delete 'AlwaysOn'"),
    (("securitySettings", "immutabilitySettings", "state"), "locked", "Immutability 'Locked'"),
    (
        ("featureSettings", "crossSubscriptionRestoreSettings", "state"),
        "permanentlydisabled",
        "Cross-subscription restore 'PermanentlyDisabled'",
    ),
)


def redundancy(props: dict[str, Any]) -> str:
    """The vault store's redundancy (GeoRedundant, LocallyRedundant, ZoneRedundant)."""
    for setting in props.get("storageSettings") or []:
        if isinstance(setting, dict) and setting.get("datastoreType", "VaultStore") == "VaultStore":
            return str(setting.get("type", "LocallyRedundant"))
    return "LocallyRedundant"


def crr_enabled(props: dict[str, Any]) -> bool:
    """Whether Cross Region Restore is on (`featureSettings.crossRegionRestoreSettings`)."""
    return _state(props, "featureSettings", "crossRegionRestoreSettings", "state") == "enabled"


def _check_crr(old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """Cross Region Restore needs a geo-redundant vault and, as in Azure, stays on once on."""
    if old is not None and crr_enabled(old) and not crr_enabled(new):
        raise BadRequest(
            "Cross Region Restore is enabled on this vault and cannot be disabled.",
            code=Code.UserErrorCrossRegionRestoreCannotBeDisabled,
            target="properties.featureSettings.crossRegionRestoreSettings.state",
        )
    if crr_enabled(new) and redundancy(new).lower() != "georedundant":
        raise BadRequest(
            "Cross Region Restore can be enabled only on a GeoRedundant vault; this vault's "
            f"storage is {redundancy(new)}.",
            code=Code.UserErrorCrossRegionRestoreNeedsGeoRedundancy,
            target="properties.storageSettings",
        )


def check_settings(old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """Refuse settings Azure refuses: out-of-range soft delete, undoing an irreversible one,
    Cross Region Restore on a vault that is not geo-redundant."""
    _check_crr(old, new)
    days = (
        new.get("securitySettings", {})
        .get("softDeleteSettings", {})
        .get("retentionDurationInDays", 14)
    )
    if not isinstance(days, int | float) or isinstance(days, bool) or not 14 <= days <= 180:
        raise BadRequest(
            f"softDeleteSettings.retentionDurationInDays must be 14-180, not {days!r}.",
            code=Code.BadRequest,
        )
    for path, final, label in _IRREVERSIBLE:
        if old is not None and _state(old, *path) == final and _state(new, *path) != final:
            raise BadRequest(
                f"{label} is irreversible and cannot be changed.",
                code=Code.UserErrorIrreversibleSettingChange,
            )


def soft_delete_days(vault: Vault) -> int | None:
    """Days a deleted instance is kept, or None when soft delete is off."""
    settings = vault.properties.get("securitySettings", {}).get("softDeleteSettings", {})
    if str(settings.get("state", "On")).lower() in ("off", "disabled"):
        return None
    return int(settings.get("retentionDurationInDays", 14))


def create_or_update(
    s: Session,
    sub: str,
    rg: str,
    name: str,
    location: str,
    properties: dict[str, Any],
    tags: dict[str, Any],
    now: datetime,
) -> tuple[Vault, bool]:
    """Create a vault with its managed identity, or update its settings; returns (vault, created)."""
    arm.check_name(name, "backup vault")
    tenancy.require_group(s, sub, rg)
    region = regions.normalize(location)
    vault = armstore.find(s, Vault, arm.vault_id(sub, rg, name))
    allowed = {k: v for k, v in properties.items() if k in DEFAULT_PROPERTIES}
    if vault is not None:
        if vault.location != region:
            raise BadRequest(
                f"Vault {name!r} is in {vault.location}; a vault cannot move to {region}.",
                code=Code.LocationCannotBeChanged,
            )
        merged = _merge(vault.properties, allowed)
        check_settings(vault.properties, merged)
        vault.properties = merged
        vault.tags = tags or vault.tags
        return vault, False
    check_settings(None, _merge(DEFAULT_PROPERTIES, allowed))
    principal, _ = identity.create_principal(
        s,
        f"vault-{uuid.uuid4().hex[:12]}-{name}"[:63],
        identity.MANAGED_IDENTITY,
        now,
        with_secret=False,
    )
    vault = armstore.create(
        s,
        Vault,
        arm.vault_id(sub, rg, name),
        sub,
        rg,
        name,
        region,
        now,
        principal_id=principal.id,
        tags=tags,
        properties=_merge(DEFAULT_PROPERTIES, allowed),
    )
    return vault, True


def get(s: Session, sub: str, rg: str, name: str) -> Vault:
    missing = (
        f"Backup vault {name!r} not found in resource group {rg!r}. "
        "Create it with `pgvault vault create`."
    )
    return armstore.get(s, Vault, arm.vault_id(sub, rg, name), missing)


def by_id(s: Session, vault_id: str) -> Vault:
    """The vault a job or an instance refers to (a foreign key: it exists)."""
    return s.get_one(Vault, vault_id)


def by_ids(s: Session, vault_ids: Iterable[str]) -> dict[str, Vault]:
    """The vaults jobs or instances refer to, by id, in one query."""
    return armstore.by_ids(s, Vault, vault_ids)


def unique_by_name(s: Session, name: str) -> Vault:
    """The one vault named `name` in any resource group (for `vault:NAME` assignees)."""
    matches = list(s.scalars(select(Vault).where(Vault.name == name)))
    if len(matches) != 1:
        raise BadRequest(
            f"{len(matches)} vaults are named {name!r}; use the vault's "
            "identity.principalId instead.",
            code=Code.PrincipalNotFound,
        )
    return matches[0]


def list_vaults(s: Session, sub: str, rg: str | None) -> list[Vault]:
    return armstore.list_in(s, Vault, sub, rg)


def delete(s: Session, vault: Vault, live: int, soft_deleted: int, purge_at: str | None) -> None:
    """Delete an empty vault. As Azure does, a vault that still protects databases, or holds
    soft-deleted instances (whose data is kept until they are purged), is refused, and the
    message says which and how to get there."""
    if live:
        extra = f" (and {soft_deleted} soft-deleted)" if soft_deleted else ""
        raise Conflict(
            f"Vault {vault.name!r} still has {live} backup instance(s){extra}. "
            "Stop protection and delete them first.",
            code=Code.UserErrorVaultNotEmpty,
        )
    if soft_deleted:
        raise Conflict(
            f"Vault {vault.name!r} cannot be deleted while it holds {soft_deleted} "
            f"soft-deleted backup instance(s): their data is kept until {purge_at}, when they "
            "are purged for good.",
            code=Code.UserErrorVaultNotEmpty,
            recommended_action="Delete the vault after that time. To purge them now (not "
            "possible when soft delete is AlwaysOn): set the vault's soft delete state to Off, "
            "undelete each instance (deleted-backup-instance undelete) and delete it again.",
        )
    s.delete(vault)
