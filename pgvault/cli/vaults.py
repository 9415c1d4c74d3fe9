"""Backup vaults and their backup policies."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pgvault import retention
from pgvault.cli.client import ApiError
from pgvault.cli.common import Call, NameOpt, VaultOpt, command, read_secret
from pgvault.cli.output import Columns, out
from pgvault.errors import PgVaultError

vault_app = typer.Typer(no_args_is_help=True, help="Backup vaults.")
policy_app = typer.Typer(no_args_is_help=True, help="Backup policies.")

VAULT_COLUMNS: Columns = (
    ("Name", "name"),
    ("Region", "location"),
    ("Identity", "identity.principalId"),
    ("Id", "id"),
)


RedundancyOpt = Annotated[
    str | None,
    typer.Option(
        "--storage-redundancy", help="GeoRedundant, LocallyRedundant (default) or ZoneRedundant."
    ),
]
CrrOpt = Annotated[
    bool,
    typer.Option(
        "--cross-region-restore",
        help="Enable Cross Region Restore (GeoRedundant vaults only; cannot be undone).",
    ),
]


def _vault_settings(redundancy: str | None, crr: bool) -> dict[str, Any]:
    props: dict[str, Any] = {}
    if redundancy:
        props["storageSettings"] = [{"datastoreType": "VaultStore", "type": redundancy}]
    if crr:
        props["featureSettings"] = {"crossRegionRestoreSettings": {"state": "Enabled"}}
    return props


@command(vault_app, "create", columns=VAULT_COLUMNS)
def vault_create(
    call: Call,
    name: NameOpt,
    region: Annotated[str, typer.Option("--region", "-l")],
    storage_redundancy: RedundancyOpt = None,
    cross_region_restore: CrrOpt = False,
) -> Any:
    """Create a backup vault in a region (with its managed identity)."""
    body = {
        "location": region,
        "identity": {"type": "SystemAssigned"},
        "properties": _vault_settings(storage_redundancy, cross_region_restore),
    }
    return call.client.put(call.vault(name), body)


@command(vault_app, "update", columns=VAULT_COLUMNS)
def vault_update(
    call: Call,
    name: NameOpt,
    storage_redundancy: RedundancyOpt = None,
    cross_region_restore: CrrOpt = False,
) -> Any:
    """Change a vault's settings (e.g. turn Cross Region Restore on)."""
    body = {"properties": _vault_settings(storage_redundancy, cross_region_restore)}
    return call.client.patch(call.vault(name), body)


@command(vault_app, "list", columns=VAULT_COLUMNS)
def vault_list(call: Call) -> Any:
    """List backup vaults."""
    return call.client.get(call.provider("Microsoft.DataProtection/backupVaults"))


@command(vault_app, "show", columns=VAULT_COLUMNS)
def vault_show(call: Call, name: NameOpt) -> Any:
    """Show a backup vault."""
    return call.client.get(call.vault(name))


@command(vault_app, "delete", output=False)
def vault_delete(call: Call, name: NameOpt) -> None:
    """Delete an empty backup vault."""
    call.client.delete(call.vault(name))
    out.print(f"Deleted vault {name}.")


NOTIFY_COLUMNS: Columns = (
    ("Destinations", "properties.destinations"),
    ("Schemes", "properties.schemes"),
    ("Updated", "properties.updatedOn"),
)


@command(vault_app, "notify-set", columns=NOTIFY_COLUMNS)
def vault_notify_set(
    call: Call,
    vault_name: VaultOpt,
    clear: Annotated[bool, typer.Option("--clear", help="Remove every destination.")] = False,
) -> Any:
    """Set where the vault's alerts go: Apprise URLs, one a line on stdin (they are secrets:
    never on the command line, stored encrypted, never shown back)."""
    urls: list[str] = []
    if not clear:
        urls = [u.strip() for u in read_secret("Apprise URLs").splitlines() if u.strip()]
    body = {"properties": {"urls": urls}}
    return call.client.put(f"{call.vault(vault_name)}/notificationSettings/default", body)


@command(vault_app, "notify-show", columns=NOTIFY_COLUMNS)
def vault_notify_show(call: Call, vault_name: VaultOpt) -> Any:
    """How many alert destinations the vault has, and their kinds (never the URLs)."""
    return call.client.get(f"{call.vault(vault_name)}/notificationSettings/default")


@command(
    vault_app,
    "notify-test",
    columns=(
        ("Destinations", "destinations"),
        ("Delivered", "delivered"),
        ("JobFailureAlerts", "alertsForAllJobFailures"),
    ),
)
def vault_notify_test(call: Call, vault_name: VaultOpt) -> Any:
    """Send a test alert to every destination of the vault now."""
    return call.client.post(f"{call.vault(vault_name)}/notificationSettings/default/test")


POLICY_COLUMNS: Columns = (("Name", "name"), ("Summary", "properties.summary"))


@command(policy_app, "create", columns=POLICY_COLUMNS)
def policy_create(
    call: Call,
    vault_name: VaultOpt,
    name: NameOpt,
    schedule: Annotated[str, typer.Option(help="weekly, daily or hourly")] = "weekly",
    days: Annotated[str, typer.Option(help="weekly: days, e.g. Sunday,Wednesday")] = "Sunday",
    time: Annotated[str, typer.Option(help="Start time HH:MM in --timezone")] = "02:00",
    every_hours: Annotated[int | None, typer.Option(help="hourly: 1,2,3,4,6,8 or 12")] = None,
    timezone: Annotated[str, typer.Option(help="UTC or an IANA zone")] = "UTC",
    keep_default: Annotated[str, typer.Option(help="ISO 8601, e.g. P3M")] = "P3M",
    keep_daily: Annotated[str | None, typer.Option(help="first backup of each day")] = None,
    keep_weekly: Annotated[str | None, typer.Option(help="first backup of each week")] = None,
    keep_monthly: Annotated[str | None, typer.Option(help="first backup of each month")] = None,
    keep_yearly: Annotated[str | None, typer.Option(help="first backup of each year")] = None,
    archive_after: Annotated[
        str | None, typer.Option(help="on-expiry, immediate, or a duration like P30D")
    ] = None,
    archive_keep: Annotated[str, typer.Option(help="total age kept in archive")] = "P3Y",
) -> Any:
    """Create or replace a policy: schedule, retention per tag, archive tier."""
    try:
        props = retention.build_policy(
            schedule=schedule,
            days=tuple(d.strip() for d in days.split(",") if d.strip()),
            time=time,
            every_hours=every_hours,
            timezone=timezone,
            keep_default=keep_default,
            keep_daily=keep_daily,
            keep_weekly=keep_weekly,
            keep_monthly=keep_monthly,
            keep_yearly=keep_yearly,
            archive_after=archive_after,
            archive_keep=archive_keep,
        )
    except PgVaultError as exc:  # the same validation the service runs, before any call
        raise ApiError(exc.code, exc.message, exc.recommended_action) from None
    return call.client.put(f"{call.vault(vault_name)}/backupPolicies/{name}", {"properties": props})


@command(policy_app, "show", columns=(*POLICY_COLUMNS, ("Id", "id")))
def policy_show(call: Call, vault_name: VaultOpt, name: NameOpt) -> Any:
    """Show a policy with a readable summary."""
    return call.client.get(f"{call.vault(vault_name)}/backupPolicies/{name}")


@command(policy_app, "list", columns=POLICY_COLUMNS)
def policy_list(call: Call, vault_name: VaultOpt) -> Any:
    """List backup policies of a vault."""
    return call.client.get(f"{call.vault(vault_name)}/backupPolicies")


@command(policy_app, "delete", output=False)
def policy_delete(call: Call, vault_name: VaultOpt, name: NameOpt) -> None:
    """Delete a policy no instance uses."""
    call.client.delete(f"{call.vault(vault_name)}/backupPolicies/{name}")
    out.print(f"Deleted policy {name}.")
