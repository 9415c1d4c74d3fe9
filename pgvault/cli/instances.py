"""Backup instances (protected databases) and their protection lifecycle."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import typer

from pgvault.cli.common import Call, NameOpt, VaultOpt, command, follow
from pgvault.cli.output import Columns, out

instance_app = typer.Typer(no_args_is_help=True, help="Backup instances (protected databases).")

INSTANCE_COLUMNS: Columns = (
    ("Name", "name"),
    ("Database", "properties.friendlyName"),
    ("State", "properties.currentProtectionState"),
    ("Policy", "properties.policyInfo.policyId"),
)


@command(instance_app, "create", columns=INSTANCE_COLUMNS)
def instance_create(
    call: Call,
    vault_name: VaultOpt,
    server: Annotated[str, typer.Option(help="Registered server name.")],
    database: Annotated[str, typer.Option(help="Database to protect.")],
    policy: Annotated[str, typer.Option(help="Backup policy name.")],
    secret: Annotated[str, typer.Option(help="Key-vault secret URI with the connection string.")],
    name: Annotated[str | None, typer.Option("--name", "-n", help="Instance name.")] = None,
) -> Any:
    """Protect a database: validate (login, privileges, versions), then create the instance."""
    vault = call.vault(vault_name)
    server_id = f"{call.provider('Microsoft.DBforPostgreSQL/servers')}/{server}"
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
    follow(call.client, call.client.post(f"{vault}/validateForBackup", {"backupInstance": props}))
    return call.client.put(f"{vault}/backupInstances/{bi_name}", {"properties": props})


@command(instance_app, "list", columns=INSTANCE_COLUMNS)
def instance_list(call: Call, vault_name: VaultOpt) -> Any:
    """List backup instances of a vault."""
    return call.client.get(f"{call.vault(vault_name)}/backupInstances")


SECONDARY_COLUMNS: Columns = (
    ("Name", "name"),
    ("Vault", "id"),
    ("Primary", "properties.primaryRegion"),
    ("Primary datastore", "properties.primaryDatastoreStatus"),
    ("Replicated", "properties.replication.replicatedPoints"),
    ("Pending", "properties.replication.pendingPoints"),
    ("Last lag (s)", "properties.replication.lastLagSeconds"),
    ("Current lag (s)", "properties.replication.currentLagSeconds"),
)


@command(instance_app, "list-secondary", columns=SECONDARY_COLUMNS)
def instance_list_secondary(
    call: Call, region: Annotated[str, typer.Option("--region", help="The secondary region.")]
) -> Any:
    """Backup instances whose secondary region is REGION (Instance Region == Secondary
    Region), with their replication lag and whether the primary datastore answers."""
    base = call.provider("Microsoft.DataProtection/locations")
    return call.client.get(f"{base}/{region}/secondaryBackupInstances")


@command(instance_app, "show", columns=INSTANCE_COLUMNS)
def instance_show(call: Call, vault_name: VaultOpt, instance: NameOpt) -> Any:
    """Show a backup instance."""
    return call.client.get(call.instance(vault_name, instance))


@command(instance_app, "delete", output=False)
def instance_delete(call: Call, vault_name: VaultOpt, instance: NameOpt) -> None:
    """Delete the instance with its data (soft delete: kept, listed and undeletable for the
    vault's soft-delete days; immediately if soft delete is off)."""
    follow(call.client, call.client.delete(call.instance(vault_name, instance)))
    out.print(f"Deleted backup instance {instance}.")


def _protection_command(action: str, name: str, doc: str) -> None:
    """A lifecycle action: POST it, wait for the operation, show the instance afterwards."""

    def change(call: Call, vault_name: VaultOpt, instance: NameOpt) -> Any:
        path = call.instance(vault_name, instance)
        follow(call.client, call.client.post(f"{path}/{action}"))
        return call.client.get(path)

    change.__doc__ = doc
    command(instance_app, name, columns=INSTANCE_COLUMNS)(change)


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


@command(
    instance_app,
    "list-deleted",
    columns=(
        ("Name", "name"),
        ("Database", "properties.friendlyName"),
        ("Deleted", "properties.deletionInfo.deletionTime"),
        ("Purge", "properties.deletionInfo.scheduledPurgeTime"),
    ),
)
def instance_list_deleted(call: Call, vault_name: VaultOpt) -> Any:
    """List soft-deleted instances (undeletable until their purge time)."""
    return call.client.get(f"{call.vault(vault_name)}/deletedBackupInstances")


@command(instance_app, "undelete", columns=INSTANCE_COLUMNS)
def instance_undelete(call: Call, vault_name: VaultOpt, instance: NameOpt) -> Any:
    """Bring back a soft-deleted instance (protection stopped, data retained)."""
    vault = call.vault(vault_name)
    follow(call.client, call.client.post(f"{vault}/deletedBackupInstances/{instance}/undelete"))
    return call.client.get(f"{vault}/backupInstances/{instance}")
