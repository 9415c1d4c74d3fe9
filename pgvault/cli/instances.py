"""Backup instances (protected databases) and their protection lifecycle."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pgvault.cli.common import (
    OutputOpt,
    RgOpt,
    SubOpt,
    VaultOpt,
    client,
    follow,
    rg_path,
    run,
    vault_path,
)
from pgvault.cli.output import Output, out, show

instance_app = typer.Typer(no_args_is_help=True, help="Backup instances (protected databases).")

INSTANCE_COLUMNS = [
    ("Name", "name"),
    ("Database", "properties.friendlyName"),
    ("State", "properties.currentProtectionState"),
    ("Policy", "properties.policyInfo.policyId"),
]


@instance_app.command("create")
def instance_create(
    vault_name: VaultOpt,
    server: Annotated[str, typer.Option(help="Registered server name.")],
    database: Annotated[str, typer.Option(help="Database to protect.")],
    policy: Annotated[str, typer.Option(help="Backup policy name.")],
    secret: Annotated[str, typer.Option(help="Key-vault secret URI with the connection string.")],
    name: Annotated[str | None, typer.Option("--name", "-n", help="Instance name.")] = None,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Protect a database: validate (login, privileges, versions), then create the instance."""
    import uuid

    c = client()
    group = rg_path(c, subscription, resource_group)
    vault = vault_path(c, subscription, resource_group, vault_name)
    server_id = f"{group}/providers/Microsoft.DBforPostgreSQL/servers/{server}"
    props = {
        "objectType": "BackupInstance",
        "dataSourceInfo": {
            "objectType": "Datasource",
            "resourceID": f"{server_id}/databases/{database}",
            "resourceName": database,
            "datasourceType": "Microsoft.DBforPostgreSQL/servers/databases",
        },
        "dataSourceSetInfo": {
            "objectType": "DatasourceSet",
            "resourceID": server_id,
            "resourceName": server,
        },
        "policyInfo": {"policyId": f"{vault}/backupPolicies/{policy}"},
        "datasourceAuthCredentials": {
            "objectType": "SecretStoreBasedAuthCredentials",
            "secretStoreResource": {"secretStoreType": "AzureKeyVault", "uri": secret},
        },
    }
    bi_name = name or f"{server}-{database}-{uuid.uuid4().hex[:8]}"

    def body() -> Any:
        op = c.post(f"{vault}/validateForBackup", {"backupInstance": props})
        follow(c, op)
        return c.put(f"{vault}/backupInstances/{bi_name}", {"properties": props})

    show(run(body), output, INSTANCE_COLUMNS)


@instance_app.command("list")
def instance_list(
    vault_name: VaultOpt,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """List backup instances of a vault."""
    c = client()
    path = f"{vault_path(c, subscription, resource_group, vault_name)}/backupInstances"
    show(run(lambda: c.get(path)), output, INSTANCE_COLUMNS)


@instance_app.command("show")
def instance_show(
    vault_name: VaultOpt,
    instance: Annotated[str, typer.Option("--name", "-n")],
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Show a backup instance."""
    c = client()
    path = f"{vault_path(c, subscription, resource_group, vault_name)}/backupInstances/{instance}"
    show(run(lambda: c.get(path)), output, INSTANCE_COLUMNS)


@instance_app.command("delete")
def instance_delete(
    vault_name: VaultOpt,
    instance: Annotated[str, typer.Option("--name", "-n")],
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Delete the instance with its data (soft delete: kept, listed and undeletable for the
    vault's soft-delete days; immediately if soft delete is off)."""
    c = client()
    path = f"{vault_path(c, subscription, resource_group, vault_name)}/backupInstances/{instance}"
    run(lambda: follow(c, c.delete(path)))
    out.print(f"Deleted backup instance {instance}.")


def _protection_command(action: str, name: str, doc: str) -> None:
    def command(
        vault_name: VaultOpt,
        instance: Annotated[str, typer.Option("--name", "-n")],
        output: OutputOpt = Output.table,
        subscription: SubOpt = None,
        resource_group: RgOpt = "default",
    ) -> None:
        c = client()
        path = (
            f"{vault_path(c, subscription, resource_group, vault_name)}/backupInstances/{instance}"
        )

        def body() -> Any:
            follow(c, c.post(f"{path}/{action}"))
            return c.get(path)

        show(run(body), output, INSTANCE_COLUMNS)

    command.__doc__ = doc
    instance_app.command(name)(command)


_protection_command(
    "stopProtection", "stop-protection", "Stop protection and retain all data forever."
)
_protection_command(
    "suspendBackups",
    "suspend-backups",
    "Stop scheduled backups; points expire by policy, the latest is kept.",
)
_protection_command(
    "resumeProtection", "resume-protection", "Resume protection after stop-protection."
)
_protection_command(
    "resumeBackups", "resume-backups", "Resume scheduled backups after suspend-backups."
)


@instance_app.command("list-deleted")
def instance_list_deleted(
    vault_name: VaultOpt,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """List soft-deleted instances (undeletable until their purge time)."""
    c = client()
    path = f"{vault_path(c, subscription, resource_group, vault_name)}/deletedBackupInstances"
    show(
        run(lambda: c.get(path)),
        output,
        [
            ("Name", "name"),
            ("Database", "properties.friendlyName"),
            ("Deleted", "properties.deletionInfo.deletionTime"),
            ("Purge", "properties.deletionInfo.scheduledPurgeTime"),
        ],
    )


@instance_app.command("undelete")
def instance_undelete(
    vault_name: VaultOpt,
    instance: Annotated[str, typer.Option("--name", "-n")],
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Bring back a soft-deleted instance (protection stopped, data retained)."""
    c = client()
    vault = vault_path(c, subscription, resource_group, vault_name)

    def body() -> Any:
        follow(c, c.post(f"{vault}/deletedBackupInstances/{instance}/undelete"))
        return c.get(f"{vault}/backupInstances/{instance}")

    show(run(body), output, INSTANCE_COLUMNS)
