"""On-demand backups, recovery points, restores and the jobs they run."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pgvault.cli.client import Client
from pgvault.cli.common import (
    JOB_COLUMNS,
    InstOpt,
    OutputOpt,
    RgOpt,
    SubOpt,
    VaultOpt,
    WaitOpt,
    client,
    finish_job,
    follow,
    rg_path,
    run,
    vault_path,
    watch,
)
from pgvault.cli.output import Output, out, show

backup_app = typer.Typer(no_args_is_help=True, help="On-demand backups.")
rp_app = typer.Typer(no_args_is_help=True, help="Recovery points.")
restore_app = typer.Typer(no_args_is_help=True, help="Restore as a database or as files.")
job_app = typer.Typer(no_args_is_help=True, help="Backup and restore jobs.")


@backup_app.command("now")
def backup_now(
    vault_name: VaultOpt,
    instance: InstOpt,
    wait: WaitOpt = False,
    retention_tag: Annotated[str | None, typer.Option(help="Retention tag override.")] = None,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Take an on-demand full backup."""
    c = client()
    path = (
        f"{vault_path(c, subscription, resource_group, vault_name)}/backupInstances/{instance}"
        "/backup"
    )
    body: dict[str, Any] = {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {}}}
    if retention_tag:
        body["backupRuleOptions"]["triggerOption"]["retentionTagOverride"] = retention_tag
    run(lambda: finish_job(c, c.post(path, body), wait, output))


RP_COLUMNS = [
    ("Recovery point", "name"),
    ("Time", "properties.recoveryPointTime"),
    ("Tier", "properties.recoveryPointDataStoresDetails.0.type"),
    ("Tag", "properties.retentionTagName"),
    ("Stored bytes", "properties.storedBytes"),
]


@rp_app.command("list")
def recovery_point_list(
    vault_name: VaultOpt,
    instance: InstOpt,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """List recovery points, latest first."""
    c = client()
    path = (
        f"{vault_path(c, subscription, resource_group, vault_name)}/backupInstances/{instance}"
        "/recoveryPoints"
    )
    data = run(lambda: c.get(path))
    for item in data.get("value", []):
        details = item["properties"].get("recoveryPointDataStoresDetails") or []
        item["properties"]["tier"] = "+".join(d.get("type", "") for d in details)
    show(data, output, [*RP_COLUMNS[:2], ("Tier", "properties.tier"), *RP_COLUMNS[3:]])


# Set by the restore commands' --rehydration-* options (archive points).
REHYDRATION: dict[str, str | None] = {"priority": None, "duration": None}
PriorityOpt = Annotated[
    str | None,
    typer.Option("--rehydration-priority", help="Archive points: Standard (default) or High."),
]
DurationOpt = Annotated[
    str | None,
    typer.Option("--rehydration-duration", help="Archive points: P10D..P30D (default P15D)."),
]


def _restore(
    c: Client,
    sub: str | None,
    rg: str,
    vault_name: str,
    instance: str,
    body: dict[str, Any],
    wait: bool,
    validate_only: bool,
    output: Output,
) -> None:
    bi = f"{vault_path(c, sub, rg, vault_name)}/backupInstances/{instance}"
    if REHYDRATION["priority"] or REHYDRATION["duration"]:
        body = {
            **body,
            "objectType": "AzureBackupRestoreWithRehydrationRequest",
            "sourceDataStoreType": "ArchiveStore",
            "rehydrationPriority": REHYDRATION["priority"] or "Standard",
            "rehydrationRetentionDuration": REHYDRATION["duration"] or "P15D",
        }
    follow(c, c.post(f"{bi}/validateRestore", {"restoreRequestObject": body}))
    if validate_only:
        out.print("Validation passed: the restore can run.")
        return
    finish_job(c, c.post(f"{bi}/restore", body), wait, output)


@restore_app.command("database")
def restore_database(
    vault_name: VaultOpt,
    instance: InstOpt,
    recovery_point: Annotated[str, typer.Option(help="Recovery point id.")],
    target_server: Annotated[str, typer.Option(help="Registered target server name.")],
    target_database: Annotated[str, typer.Option(help="New database name (must not exist).")],
    secret: Annotated[str, typer.Option(help="Secret URI with the target's connection string.")],
    target_resource_group: Annotated[str | None, typer.Option(help="Target server's RG.")] = None,
    wait: WaitOpt = False,
    rehydration_priority: PriorityOpt = None,
    rehydration_duration: DurationOpt = None,
    validate_only: Annotated[bool, typer.Option(help="Only run Review + restore checks.")] = False,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Restore a recovery point as a new database (owned by the secret's user)."""
    REHYDRATION.update(priority=rehydration_priority, duration=rehydration_duration)
    c = client()
    server_id = (
        f"{rg_path(c, subscription, target_resource_group or resource_group)}"
        f"/providers/Microsoft.DBforPostgreSQL/servers/{target_server}"
    )
    body = {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": recovery_point,
        "sourceDataStoreType": "VaultStore",
        "restoreTargetInfo": {
            "objectType": "RestoreTargetInfo",
            "recoveryOption": "FailIfExists",
            "datasourceInfo": {
                "objectType": "Datasource",
                "resourceID": f"{server_id}/databases/{target_database}",
                "resourceName": target_database,
            },
            "datasourceSetInfo": {"objectType": "DatasourceSet", "resourceID": server_id},
            "datasourceAuthCredentials": {
                "objectType": "SecretStoreBasedAuthCredentials",
                "secretStoreResource": {"secretStoreType": "AzureKeyVault", "uri": secret},
            },
        },
    }
    run(
        lambda: _restore(
            c, subscription, resource_group, vault_name, instance, body, wait, validate_only, output
        )
    )


@restore_app.command("files")
def restore_files(
    vault_name: VaultOpt,
    instance: InstOpt,
    recovery_point: Annotated[str, typer.Option(help="Recovery point id.")],
    container: Annotated[
        str, typer.Option(help="Container URL (storage account blob endpoint + container name).")
    ],
    file_prefix: Annotated[str, typer.Option(help="Prefix of the files written.")],
    wait: WaitOpt = False,
    rehydration_priority: PriorityOpt = None,
    rehydration_duration: DurationOpt = None,
    validate_only: Annotated[bool, typer.Option(help="Only run Review + restore checks.")] = False,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Restore a recovery point as dump files for your own pg_restore (grants kept)."""
    REHYDRATION.update(priority=rehydration_priority, duration=rehydration_duration)
    c = client()
    body = {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": recovery_point,
        "sourceDataStoreType": "VaultStore",
        "restoreTargetInfo": {
            "objectType": "RestoreFilesTargetInfo",
            "recoveryOption": "FailIfExists",
            "targetDetails": {
                "url": container,
                "filePrefix": file_prefix,
                "restoreTargetLocationType": "AzureBlobs",
            },
        },
    }
    run(
        lambda: _restore(
            c, subscription, resource_group, vault_name, instance, body, wait, validate_only, output
        )
    )


@rp_app.command("show")
def recovery_point_show(
    vault_name: VaultOpt,
    instance: InstOpt,
    recovery_point: Annotated[str, typer.Option(help="Recovery point id.")],
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Show one recovery point: time, tag, tiers, expiry, sizes, manifest metadata."""
    c = client()
    path = (
        f"{vault_path(c, subscription, resource_group, vault_name)}/backupInstances/{instance}"
        f"/recoveryPoints/{recovery_point}"
    )
    show(run(lambda: c.get(path)), output, [*RP_COLUMNS, ("Expiry", "properties.expiryTime")])


@rp_app.command("rehydrate")
def recovery_point_rehydrate(
    vault_name: VaultOpt,
    instance: InstOpt,
    recovery_point: Annotated[str, typer.Option(help="Recovery point id.")],
    rehydration_priority: PriorityOpt = None,
    rehydration_duration: DurationOpt = None,
    wait: WaitOpt = False,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Bring an archived point back to the vault tier for a while (then restores need none)."""
    c = client()
    path = (
        f"{vault_path(c, subscription, resource_group, vault_name)}/backupInstances/{instance}"
        "/rehydrate"
    )
    body = {
        "recoveryPointId": recovery_point,
        "rehydrationPriority": rehydration_priority or "Standard",
        "rehydrationRetentionDuration": rehydration_duration or "P15D",
    }
    run(lambda: finish_job(c, c.post(path, body), wait, output))


@job_app.command("list")
def job_list(
    vault_name: VaultOpt,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """List jobs of a vault, newest first."""
    c = client()
    path = f"{vault_path(c, subscription, resource_group, vault_name)}/backupJobs"
    show(run(lambda: c.get(path)), output, JOB_COLUMNS)


def _job_path(c: Client, sub: str | None, rg: str, vault_name: str, job_id: str) -> str:
    if job_id.startswith("/subscriptions/"):
        return job_id
    return f"{vault_path(c, sub, rg, vault_name)}/backupJobs/{job_id}"


@job_app.command("show")
def job_show(
    job_id: Annotated[str, typer.Argument(help="Job id (or full job resource id).")],
    vault_name: VaultOpt,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Show a job: status, phases, bytes, errors."""
    c = client()
    data = run(lambda: c.get(_job_path(c, subscription, resource_group, vault_name, job_id)))
    show(
        data,
        output,
        [
            *JOB_COLUMNS,
            ("Bytes", "properties.progress.bytesDone"),
            ("Error", "properties.errorDetails"),
        ],
    )


@job_app.command("watch")
def job_watch(
    job_id: Annotated[str, typer.Argument(help="Job id (or full job resource id).")],
    vault_name: VaultOpt,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Follow a job with a progress bar (bytes, phase, ETA) until it ends."""
    c = client()
    path = run(lambda: _job_path(c, subscription, resource_group, vault_name, job_id))
    job = run(lambda: watch(c, path, output == Output.json))
    show(job, output, JOB_COLUMNS)
    if job["properties"]["status"] != "Completed":
        raise typer.Exit(1)
