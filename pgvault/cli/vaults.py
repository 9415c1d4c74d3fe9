"""Backup vaults and their backup policies."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pgvault.cli.client import ApiError
from pgvault.cli.common import (
    OutputOpt,
    RgOpt,
    SubOpt,
    VaultOpt,
    client,
    rg_path,
    run,
    vault_path,
)
from pgvault.cli.output import Output, out, show

vault_app = typer.Typer(no_args_is_help=True, help="Backup vaults.")
policy_app = typer.Typer(no_args_is_help=True, help="Backup policies.")

VAULT_COLUMNS = [
    ("Name", "name"),
    ("Region", "location"),
    ("Identity", "identity.principalId"),
    ("Id", "id"),
]


@vault_app.command("create")
def vault_create(
    name: Annotated[str, typer.Option("--name", "-n")],
    region: Annotated[str, typer.Option("--region", "-l")],
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Create a backup vault in a region (with its managed identity)."""
    c = client()
    body = {"location": region, "identity": {"type": "SystemAssigned"}, "properties": {}}
    show(
        run(lambda: c.put(vault_path(c, subscription, resource_group, name), body)),
        output,
        VAULT_COLUMNS,
    )


@vault_app.command("list")
def vault_list(
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """List backup vaults."""
    c = client()
    path = f"{rg_path(c, subscription, resource_group)}/providers/Microsoft.DataProtection/backupVaults"
    show(run(lambda: c.get(path)), output, VAULT_COLUMNS)


@vault_app.command("show")
def vault_show(
    name: Annotated[str, typer.Option("--name", "-n")],
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Show a backup vault."""
    c = client()
    show(
        run(lambda: c.get(vault_path(c, subscription, resource_group, name))), output, VAULT_COLUMNS
    )


@vault_app.command("delete")
def vault_delete(
    name: Annotated[str, typer.Option("--name", "-n")],
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Delete an empty backup vault."""
    c = client()
    run(lambda: c.delete(vault_path(c, subscription, resource_group, name)))
    out.print(f"Deleted vault {name}.")


POLICY_COLUMNS = [("Name", "name"), ("Summary", "properties.summary")]


@policy_app.command("create")
def policy_create(
    vault_name: VaultOpt,
    name: Annotated[str, typer.Option("--name", "-n")],
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
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Create or replace a policy: schedule, retention per tag, archive tier."""
    from pgvault import retention

    c = client()
    path = f"{vault_path(c, subscription, resource_group, vault_name)}/backupPolicies/{name}"

    def body() -> Any:
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
        except Exception as exc:  # the same validation the service runs
            raise ApiError(getattr(exc, "code", "BadParameter"), str(exc)) from None
        return c.put(path, {"properties": props})

    show(run(body), output, POLICY_COLUMNS)


@policy_app.command("show")
def policy_show(
    vault_name: VaultOpt,
    name: Annotated[str, typer.Option("--name", "-n")],
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Show a policy with a readable summary."""
    c = client()
    path = f"{vault_path(c, subscription, resource_group, vault_name)}/backupPolicies/{name}"
    show(run(lambda: c.get(path)), output, [*POLICY_COLUMNS, ("Id", "id")])


@policy_app.command("list")
def policy_list(
    vault_name: VaultOpt,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """List backup policies of a vault."""
    c = client()
    path = f"{vault_path(c, subscription, resource_group, vault_name)}/backupPolicies"
    show(run(lambda: c.get(path)), output, POLICY_COLUMNS)


@policy_app.command("delete")
def policy_delete(
    vault_name: VaultOpt,
    name: Annotated[str, typer.Option("--name", "-n")],
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Delete a policy no instance uses."""
    c = client()
    run(
        lambda: c.delete(
            f"{vault_path(c, subscription, resource_group, vault_name)}/backupPolicies/{name}"
        )
    )
    out.print(f"Deleted policy {name}.")
