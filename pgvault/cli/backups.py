"""On-demand backups, recovery points, restores and the jobs they run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from pgvault.cli.common import (
    JOB_COLUMNS,
    Call,
    InstOpt,
    Scope,
    UsageError,
    VaultOpt,
    WaitOpt,
    command,
    finish_job,
    follow,
    watch,
)
from pgvault.cli.output import Columns, Output, out

backup_app = typer.Typer(no_args_is_help=True, help="On-demand backups.")
rp_app = typer.Typer(no_args_is_help=True, help="Recovery points.")
restore_app = typer.Typer(no_args_is_help=True, help="Restore as a database or as files.")
job_app = typer.Typer(no_args_is_help=True, help="Backup and restore jobs.")

PointOpt = Annotated[str, typer.Option(help="Recovery point id.")]
JobIdArg = Annotated[str, typer.Argument(help="Job id (or full job resource id).")]
SecondaryOpt = Annotated[
    str | None,
    typer.Option(
        "--secondary-region",
        help="Cross-region restore: the vault's paired secondary region (e.g. westus).",
    ),
]


def _locations(call: Call, region: str) -> str:
    """Where the secondary-region calls of `region` live (Azure's `locations/{region}`)."""
    return f"{call.provider('Microsoft.DataProtection/locations')}/{region}"


def _source(call: Call, vault_name: str, instance: str) -> dict[str, str]:
    """crossRegionRestoreDetails of an instance: its vault's (primary) region and its id."""
    vault = call.client.get(call.vault(vault_name))
    return {
        "sourceRegion": str(vault["location"]),
        "sourceBackupInstanceId": call.instance(vault_name, instance),
    }


@command(backup_app, "now")
def backup_now(
    call: Call,
    vault_name: VaultOpt,
    instance: InstOpt,
    wait: WaitOpt = False,
    retention_tag: Annotated[str | None, typer.Option(help="Retention tag override.")] = None,
) -> None:
    """Take an on-demand full backup."""
    body: dict[str, Any] = {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {}}}
    if retention_tag:
        body["backupRuleOptions"]["triggerOption"]["retentionTagOverride"] = retention_tag
    path = f"{call.instance(vault_name, instance)}/backup"
    finish_job(call, call.client.post(path, body), wait)


RP_COLUMNS: Columns = (
    ("Recovery point", "name"),
    ("Time", "properties.recoveryPointTime"),
    ("Tier", "properties.recoveryPointDataStoresDetails.0.type"),
    ("Tag", "properties.retentionTagName"),
    ("Stored bytes", "properties.storedBytes"),
)


@command(
    rp_app,
    "list",
    columns=(
        *RP_COLUMNS[:2],
        ("Tier", "properties.tier"),
        *RP_COLUMNS[3:],
        ("Region", "properties.region"),
        ("Lag (s)", "properties.replicationLagSeconds"),
    ),
)
def recovery_point_list(
    call: Call, vault_name: VaultOpt, instance: InstOpt, secondary_region: SecondaryOpt = None
) -> Any:
    """List recovery points, latest first (with --secondary-region: those available there)."""
    if secondary_region:
        data = call.client.post(
            f"{_locations(call, secondary_region)}/fetchSecondaryRecoveryPoints",
            _source(call, vault_name, instance),
        )
    else:
        data = call.client.get(f"{call.instance(vault_name, instance)}/recoveryPoints")
    for item in data.get("value", []):
        details = item["properties"].get("recoveryPointDataStoresDetails") or []
        item["properties"]["tier"] = "+".join(d.get("type", "") for d in details)
    return data


PriorityOpt = Annotated[
    str | None,
    typer.Option("--rehydration-priority", help="Archive points: Standard (default) or High."),
]
DurationOpt = Annotated[
    str | None,
    typer.Option("--rehydration-duration", help="Archive points: P10D..P30D (default P15D)."),
]
ValidateOnlyOpt = Annotated[bool, typer.Option(help="Only run Review + restore checks.")]
VerifyFirstOpt = Annotated[
    bool,
    typer.Option(
        "--verify-first",
        help="Read and check every object of the point before touching the target "
        "(default: each object is checked while it streams).",
    ),
]


def _with_rehydration(
    body: dict[str, Any], priority: str | None, duration: str | None
) -> dict[str, Any]:
    """A restore from an archived point asks for rehydration when either option is given."""
    if not (priority or duration):
        return body
    return {
        **body,
        "objectType": "AzureBackupRestoreWithRehydrationRequest",
        "sourceDataStoreType": "ArchiveStore",
        "rehydrationPriority": priority or "Standard",
        "rehydrationRetentionDuration": duration or "P15D",
    }


def _restore(
    call: Call,
    vault_name: str,
    instance: str,
    body: dict[str, Any],
    wait: bool,
    validate_only: bool,
    secondary_region: str | None = None,
) -> None:
    """Run the Review + restore checks, then (unless only those) queue the restore."""
    if secondary_region:
        _restore_in_secondary(
            call, vault_name, instance, body, wait, validate_only, secondary_region
        )
        return
    bi = call.instance(vault_name, instance)
    follow(call.client, call.client.post(f"{bi}/validateRestore", {"restoreRequestObject": body}))
    if validate_only:
        if call.output != Output.none:
            out.print("Validation passed: the restore can run.")
        return
    finish_job(call, call.client.post(f"{bi}/restore", body), wait)


def _restore_in_secondary(
    call: Call,
    vault_name: str,
    instance: str,
    body: dict[str, Any],
    wait: bool,
    validate_only: bool,
    region: str,
) -> None:
    """validateCrossRegionRestore, then crossRegionRestore, at `locations/{region}`."""
    request = {
        "restoreRequestObject": body,
        "crossRegionRestoreDetails": _source(call, vault_name, instance),
    }
    base = _locations(call, region)
    follow(call.client, call.client.post(f"{base}/validateCrossRegionRestore", request))
    if validate_only:
        if call.output != Output.none:
            out.print(f"Validation passed: the restore can run in {region}.")
        return
    finish_job(call, call.client.post(f"{base}/crossRegionRestore", request), wait)


RESTORE_REQUEST_FIX = (
    "Give --restore-request FILE (the JSON `az dataprotection backup-instance restore "
    "initialize-for-data-recovery` writes), or --recovery-point, --target-server, "
    "--target-database and --secret."
)


def _restore_request(path: Path) -> dict[str, Any]:
    """The restore request in a file (az's snake_case keys or Azure's camelCase: the API
    takes both)."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(
            "InvalidRestoreRequest",
            f"--restore-request {path} is not a readable JSON file: {reason}.",
            RESTORE_REQUEST_FIX,
        ) from None
    if not isinstance(body, dict):
        raise UsageError(
            "InvalidRestoreRequest",
            f"--restore-request {path} holds no JSON object (a restore request).",
            RESTORE_REQUEST_FIX,
        )
    return body


@command(restore_app, "database")
def restore_database(
    call: Call,
    vault_name: VaultOpt,
    instance: InstOpt,
    recovery_point: Annotated[str | None, typer.Option(help="Recovery point id.")] = None,
    target_server: Annotated[
        str | None, typer.Option(help="Registered target server name.")
    ] = None,
    target_database: Annotated[
        str | None, typer.Option(help="New database name (must not exist).")
    ] = None,
    secret: Annotated[
        str | None, typer.Option(help="Secret URI with the target's connection string.")
    ] = None,
    restore_request: Annotated[
        Path | None,
        typer.Option(
            "--restore-request",
            help="A restore request JSON file, e.g. the one `az dataprotection backup-instance "
            "restore initialize-for-data-recovery` writes (instead of the four options above).",
        ),
    ] = None,
    target_resource_group: Annotated[str | None, typer.Option(help="Target server's RG.")] = None,
    wait: WaitOpt = False,
    rehydration_priority: PriorityOpt = None,
    rehydration_duration: DurationOpt = None,
    validate_only: ValidateOnlyOpt = False,
    secondary_region: SecondaryOpt = None,
    verify_first: VerifyFirstOpt = False,
    table: Annotated[
        list[str] | None,
        typer.Option(
            "--table",
            help="Restore only this table (schema.table), with what it needs; repeatable.",
        ),
    ] = None,
    schema: Annotated[
        list[str] | None,
        typer.Option("--schema", help="Restore only this schema's tables; repeatable."),
    ] = None,
) -> None:
    """Restore a recovery point as a new database (owned by the secret's user); with
    --secondary-region, from the replica in the paired region to a server there."""
    options = _options(verify_first, table, schema)
    given = [recovery_point, target_server, target_database, secret]
    if restore_request is not None:
        if any(v is not None for v in given):
            raise UsageError(
                "BadParameter",
                "--restore-request replaces --recovery-point, --target-server, "
                "--target-database and --secret; give one or the other.",
                RESTORE_REQUEST_FIX,
            )
        body = _with_rehydration(
            _restore_request(restore_request), rehydration_priority, rehydration_duration
        )
        _restore(
            call, vault_name, instance, {**body, **options}, wait, validate_only, secondary_region
        )
        return
    if any(v is None for v in given):
        raise UsageError(
            "BadParameter",
            "The restore needs --recovery-point, --target-server, --target-database and "
            "--secret (or --restore-request).",
            RESTORE_REQUEST_FIX,
        )
    server_id = (
        f"{call.group(target_resource_group)}"
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
    body = _with_rehydration(body, rehydration_priority, rehydration_duration)
    _restore(call, vault_name, instance, {**body, **options}, wait, validate_only, secondary_region)


def _options(verify_first: bool, tables: list[str] | None, schemas: list[str] | None) -> Any:
    """The request's `pgvaultOptions` extension (absent when nothing is asked)."""
    opts: dict[str, Any] = {}
    if verify_first:
        opts["verifyFirst"] = True
    if tables:
        opts["tables"] = tables
    if schemas:
        opts["schemas"] = schemas
    return {"pgvaultOptions": opts} if opts else {}


@command(restore_app, "files")
def restore_files(
    call: Call,
    vault_name: VaultOpt,
    instance: InstOpt,
    recovery_point: PointOpt,
    container: Annotated[
        str, typer.Option(help="Container URL (storage account blob endpoint + container name).")
    ],
    file_prefix: Annotated[str, typer.Option(help="Prefix of the files written.")],
    wait: WaitOpt = False,
    rehydration_priority: PriorityOpt = None,
    rehydration_duration: DurationOpt = None,
    validate_only: ValidateOnlyOpt = False,
    secondary_region: SecondaryOpt = None,
    verify_first: VerifyFirstOpt = False,
) -> None:
    """Restore a recovery point as a pg_restore -Fd archive (owners and grants kept); with
    --secondary-region, from the replica in the paired region to a container there."""
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
    body = _with_rehydration(body, rehydration_priority, rehydration_duration)
    _restore(
        call,
        vault_name,
        instance,
        {**body, **_options(verify_first, None, None)},
        wait,
        validate_only,
        secondary_region,
    )


@command(rp_app, "show", columns=(*RP_COLUMNS, ("Expiry", "properties.expiryTime")))
def recovery_point_show(
    call: Call, vault_name: VaultOpt, instance: InstOpt, recovery_point: PointOpt
) -> Any:
    """Show one recovery point: time, tag, tiers, expiry, sizes, manifest metadata."""
    return call.client.get(f"{call.instance(vault_name, instance)}/recoveryPoints/{recovery_point}")


@command(rp_app, "contents")
def recovery_point_contents(
    call: Call, vault_name: VaultOpt, instance: InstOpt, recovery_point: PointOpt
) -> Any:
    """List a point's schemas and tables (sizes, row estimates), for restore --table/--schema."""
    return call.client.get(
        f"{call.instance(vault_name, instance)}/recoveryPoints/{recovery_point}/contents"
    )


@command(rp_app, "rehydrate")
def recovery_point_rehydrate(
    call: Call,
    vault_name: VaultOpt,
    instance: InstOpt,
    recovery_point: PointOpt,
    rehydration_priority: PriorityOpt = None,
    rehydration_duration: DurationOpt = None,
    wait: WaitOpt = False,
) -> None:
    """Bring an archived point back to the vault tier for a while (then restores need none)."""
    body = {
        "recoveryPointId": recovery_point,
        "rehydrationPriority": rehydration_priority or "Standard",
        "rehydrationRetentionDuration": rehydration_duration or "P15D",
    }
    finish_job(
        call, call.client.post(f"{call.instance(vault_name, instance)}/rehydrate", body), wait
    )


@command(job_app, "list", columns=JOB_COLUMNS)
def job_list(call: Call, vault_name: VaultOpt, secondary_region: SecondaryOpt = None) -> Any:
    """List jobs of a vault, newest first (with --secondary-region: its cross-region
    restores in that region)."""
    if secondary_region:
        vault = call.client.get(call.vault(vault_name))
        body = {"sourceRegion": vault["location"], "sourceBackupVaultId": call.vault(vault_name)}
        return call.client.post(
            f"{_locations(call, secondary_region)}/fetchCrossRegionRestoreJobs", body
        )
    return call.client.get(f"{call.vault(vault_name)}/backupJobs")


@command(job_app, "cancel", columns=JOB_COLUMNS)
def job_cancel(call: Call, job_id: JobIdArg, vault_name: VaultOpt) -> Any:
    """Cancel a queued or running job (a restore cannot be cancelled once its data
    transfer has started)."""
    return call.client.post(f"{_job_path(call, vault_name, job_id)}/cancel")


def _job_path(call: Call, vault_name: str, job_id: str) -> str:
    if job_id.startswith("/subscriptions/"):
        return job_id
    return f"{call.vault(vault_name)}/backupJobs/{job_id}"


@command(
    job_app,
    "show",
    columns=(
        *JOB_COLUMNS,
        ("Bytes", "properties.progress.bytesDone"),
        ("Error", "properties.errorDetails"),
    ),
)
def job_show(call: Call, job_id: JobIdArg, vault_name: VaultOpt) -> Any:
    """Show a job: status, phases, bytes, errors."""
    return call.client.get(_job_path(call, vault_name, job_id))


@command(job_app, "watch")
def job_watch(call: Call, job_id: JobIdArg, vault_name: VaultOpt) -> None:
    """Follow a job with a progress bar (bytes, phase, ETA) until it ends."""
    job = watch(call.client, _job_path(call, vault_name, job_id), call.machine)
    call.show(job, JOB_COLUMNS)
    if job["properties"]["status"] != "Completed":
        raise typer.Exit(1)


catalog_app = typer.Typer(no_args_is_help=True, help="The catalog of recovery points.")


@command(
    catalog_app,
    "rebuild",
    scope=Scope.none,
    columns=(
        ("Manifests", "manifestsFound"),
        ("Added", "pointsAdded"),
        ("AlreadyPresent", "pointsAlreadyPresent"),
        ("Unmatched", "unmatched"),
        ("Incomplete", "incomplete"),
    ),
)
def catalog_rebuild(call: Call) -> Any:
    """Rebuild recovery points from the datastore's manifests (after losing the metadata:
    re-create servers, secrets, vaults, policies and instances with their old names first)."""
    return call.client.post("/pgvault/catalog/rebuild")
