"""Restore: validate a request ("Review + restore"), queue it, and run it as a job.

Two targets, as in Azure: a new database on a registered server in the vault's
region (everything owned by the key-vault user; grants are not replayed), or dump
files in a storage container (owners and grants kept, for the user's pg_restore).
Validation runs every check and reports all failures at once.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy.orm import Session

from pgvault import (
    connstr,
    instances,
    jobs,
    permissions,
    recovery_points,
    rehydration,
    secrets,
    servers,
    vaults,
)
from pgvault.clock import iso
from pgvault.context import Context
from pgvault.engine import pgtools
from pgvault.engine import restore as engine
from pgvault.errors import BadRequest, Code, PgVaultError, UserError, ValidationFailed
from pgvault.progress import JobProgress, fail
from pgvault.storage import accounts
from pgvault.storage.backends import Location

_PREFIX = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


@dataclass(frozen=True)
class DatabaseTarget:
    server_id: str
    database: str
    secret_uri: str
    location: str | None = None


@dataclass(frozen=True)
class FilesTarget:
    url: str
    file_prefix: str
    arm_id: str | None = None
    location: str | None = None


@dataclass(frozen=True)
class RestoreRequest:
    recovery_point_id: str
    source_datastore: str
    target: DatabaseTarget | FilesTarget
    rehydration_priority: str | None = None
    rehydration_duration: str | None = None

    @property
    def restore_type(self) -> str:
        return "RestoreAsDatabase" if isinstance(self.target, DatabaseTarget) else "RestoreAsFiles"

    def to_params(self) -> dict[str, Any]:
        return {
            "restoreType": self.restore_type,
            "recoveryPointId": self.recovery_point_id,
            "sourceDataStoreType": self.source_datastore,
            "target": asdict(self.target),
            "rehydrationPriority": self.rehydration_priority,
            "rehydrationRetentionDuration": self.rehydration_duration,
        }

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> RestoreRequest:
        t = params["target"]
        target: DatabaseTarget | FilesTarget = (
            DatabaseTarget(**t)
            if params["restoreType"] == "RestoreAsDatabase"
            else FilesTarget(**t)
        )
        return cls(
            params["recoveryPointId"],
            params["sourceDataStoreType"],
            target,
            params.get("rehydrationPriority"),
            params.get("rehydrationRetentionDuration"),
        )


def check_file_prefix(prefix: str) -> str:
    """A prefix stays inside its container: relative, no `..`, safe characters only."""
    if (
        not isinstance(prefix, str)
        or not prefix
        or len(prefix) > 512
        or not _PREFIX.fullmatch(prefix)
        or any(part in (".", "..") for part in prefix.split("/"))
    ):
        raise BadRequest(
            f"Invalid file prefix {prefix!r}: use a relative path of letters, digits, '.', '_', "
            "'-' and '/', without '..' or a leading '/'.",
            code=Code.UserErrorInvalidFilePrefix,
            target="targetDetails.filePrefix",
        )
    return prefix


@dataclass
class Checked:
    """What validation resolved, for the job to use."""

    point: recovery_points.RecoveryPoint
    endpoint: pgtools.Endpoint | None = None
    container: Location | None = None


def _cross_subscription_blocked(vault: vaults.Vault, subscription: str) -> bool:
    state = (
        vault.properties.get("featureSettings", {})
        .get("crossSubscriptionRestoreSettings", {})
        .get("state", "Enabled")
    )
    return str(state).lower() != "enabled" and subscription.lower() != vault.subscription_id


def _db_checks(
    ctx: Context,
    s: Session,
    vault: vaults.Vault,
    inst: instances.Instance,
    point: recovery_points.RecoveryPoint,
    t: DatabaseTarget,
    errors: list[PgVaultError],
) -> pgtools.Endpoint | None:
    instances.check_database_name(t.database)
    try:
        server = servers.get_by_id(s, t.server_id)
    except PgVaultError as exc:
        errors.append(
            UserError(
                exc.message,
                code=Code.UserErrorDBNotFound,
                recommended_action="Register the target server first.",
            )
        )
        return None
    if server.location != vault.location:
        errors.append(
            UserError(
                f"Target server {server.name!r} is in {server.location}; this vault restores only to "
                f"servers in {vault.location}.",
                code=Code.UserErrorTargetRegionMismatch,
                recommended_action="Pick a server in the vault's region, or use cross-region restore.",
            )
        )
    if server.id == inst.server_id and t.database == inst.database:
        errors.append(
            UserError(
                "Restoring over the original database is not supported; restore into a new database.",
                code=Code.UserErrorRestoreOverOriginalNotSupported,
                recommended_action="Choose another target database name.",
            )
        )
    if _cross_subscription_blocked(vault, server.subscription_id):
        errors.append(
            UserError(
                f"Vault {vault.name!r} has cross-subscription restore disabled, and server "
                f"{server.name!r} is in subscription {server.subscription_id}.",
                code=Code.UserErrorCrossSubscriptionRestoreDisabled,
                recommended_action="Restore to a server in the vault's subscription, or enable "
                "crossSubscriptionRestoreSettings on the vault.",
            )
        )
    errors.extend(permissions.on_server(s, vault, server))
    try:
        denied = permissions.on_secret(s, vault, t.secret_uri)
        errors.extend(denied)
        if denied:
            return None
        creds = connstr.parse(secrets.resolve(s, ctx.cipher, t.secret_uri))
    except PgVaultError as exc:
        errors.append(exc)
        return None
    ep = pgtools.Endpoint(server.host, server.port, creds)
    try:
        info = engine.inspect_target(ep, t.database)
    except PgVaultError as exc:
        errors.append(exc)
        return None
    source_major = int(point.manifest.get("serverVersionNum", 0)) // 10000
    if info.server_version_num // 10000 < source_major:
        errors.append(
            UserError(
                f"The target server runs PostgreSQL {info.server_version_num // 10000}, older than the "
                f"source's {source_major}; restoring to a lower major version is not supported.",
                code=Code.UserErrorRestoreToLowerVersion,
                recommended_action="Restore to a server of the same or a newer major version.",
            )
        )
    if info.database_exists:
        errors.append(
            UserError(
                f"Database {t.database!r} already exists on server {server.name!r}.",
                code=Code.UserErrorDatabaseNameAlreadyInUse,
                recommended_action="Choose a new target database name (restores never overwrite).",
            )
        )
    if not info.can_create_db:
        errors.append(
            UserError(
                f"User {creds.user!r} cannot create databases on server {server.name!r}.",
                code=Code.UserErrorMissingDBPermissions,
                recommended_action=f"Run on the target: ALTER ROLE {pgtools.quote_ident(creds.user)} "
                "CREATEDB;",
            )
        )
    return ep


def _files_checks(
    ctx: Context, s: Session, vault: vaults.Vault, t: FilesTarget, errors: list[PgVaultError]
) -> Location | None:
    check_file_prefix(t.file_prefix)
    try:
        account, container = accounts.resolve_target(s, t.url, t.arm_id)
    except PgVaultError as exc:
        errors.append(exc)
        return None
    if account.location != vault.location:
        errors.append(
            UserError(
                f"Storage account {account.name!r} is in {account.location}; this vault restores only "
                f"to storage in {vault.location}.",
                code=Code.UserErrorTargetRegionMismatch,
                recommended_action="Pick a storage account in the vault's region.",
            )
        )
    if _cross_subscription_blocked(vault, account.subscription_id) and not t.arm_id:
        errors.append(
            UserError(
                f"Vault {vault.name!r} has cross-subscription restore disabled, and storage "
                f"account {account.name!r} is in another subscription.",
                code=Code.UserErrorCrossSubscriptionRestoreDisabled,
                recommended_action="Restore to storage in the vault's subscription.",
            )
        )
    denied = permissions.on_container(s, vault, account, container.name)
    if denied:
        errors.extend(denied)
        return None
    location = accounts.container_location(ctx.cipher, account, container.name)
    try:
        location.check_writable()
    except PgVaultError as exc:
        errors.append(
            UserError(
                f"Cannot write to container {container.name!r}: {exc.message}",
                code=Code.UserErrorContainerNotAccessible,
                recommended_action="Check the storage account's endpoint and credentials.",
            )
        )
    for name in (f"{t.file_prefix}.dump", f"{t.file_prefix}.manifest.json"):
        if location.exists(name):
            errors.append(
                UserError(
                    f"{name!r} already exists in container {container.name!r}.",
                    code=Code.UserErrorFileAlreadyExists,
                    recommended_action="Choose another file prefix (restores never overwrite).",
                )
            )
    return location


def validate(
    ctx: Context, s: Session, vault: vaults.Vault, inst: instances.Instance, req: RestoreRequest
) -> Checked:
    """Run every check of "Review + restore"; raise ValidationFailed listing all failures."""
    point = recovery_points.get(s, inst.id, req.recovery_point_id)
    rehydration.check_source(
        point,
        req.source_datastore,
        req.rehydration_priority,
        req.rehydration_duration,
        ctx.clock.now(),
    )
    errors: list[PgVaultError] = []
    checked = Checked(point)
    if isinstance(req.target, DatabaseTarget):
        checked.endpoint = _db_checks(ctx, s, vault, inst, point, req.target, errors)
    else:
        checked.container = _files_checks(ctx, s, vault, req.target, errors)
    if errors:
        raise ValidationFailed(errors)
    return checked


def queue(
    ctx: Context, s: Session, vault: vaults.Vault, inst: instances.Instance, req: RestoreRequest
) -> jobs.Job:
    """Validate, then create the restore job (the worker validates again before it starts)."""
    checked = validate(ctx, s, vault, inst, req)
    job = jobs.create(
        s,
        vault_id=vault.id,
        instance_id=inst.id,
        operation=jobs.RESTORE,
        params=req.to_params(),
        now=ctx.clock.now(),
        recovery_point_id=req.recovery_point_id,
    )
    job.result = {"recoveryPointTime": iso(checked.point.created_at)}
    if str(req.rehydration_priority or "").lower() == "high":
        job.priority = rehydration.HIGH_PRIORITY
    return job


def run(ctx: Context, job_id: str) -> None:
    """Run a claimed restore job; a database it created is dropped if anything fails."""
    progress = JobProgress(ctx, job_id)
    created: pgtools.Endpoint | None = None
    req: RestoreRequest | None = None
    try:
        progress.phase("Validating")
        with ctx.db.session() as s:
            job = jobs.get(s, job_id)
            req = RestoreRequest.from_params(job.params)
            inst = s.get(instances.Instance, job.instance_id)
            assert inst is not None
            vault = s.get(vaults.Vault, inst.vault_id)
            assert vault is not None
            checked = validate(ctx, s, vault, inst, req)
        if rehydration.needed(checked.point, req.source_datastore, ctx.clock.now()):
            progress.phase("Rehydrating")
            rehydration.rehydrate(ctx, checked.point.id, req.rehydration_duration)
        source = ctx.datastore.child(checked.point.location)
        manifest = engine.load_manifest(source)
        progress.phase("Verifying recovery point", manifest.storedBytes)
        engine.verify(source, manifest, progress)
        if isinstance(req.target, DatabaseTarget):
            assert checked.endpoint is not None
            progress.phase("Creating database")
            engine.create_database(checked.endpoint, req.target.database)
            created = checked.endpoint
            _note(ctx, job_id, {"createdDatabase": req.target.database})
            progress.phase("Transferring data", manifest.storedBytes)
            engine.into_database(checked.endpoint, req.target.database, source, manifest, progress)
            result: dict[str, Any] = {
                "recoveryDestination": f"{req.target.server_id}/databases/{req.target.database}"
            }
        else:
            assert checked.container is not None
            progress.phase("Transferring data", manifest.storedBytes)
            files = engine.into_files(
                source, manifest, checked.container, req.target.file_prefix, progress
            )
            result = {"recoveryDestination": req.target.url.rstrip("/") + "/", "files": files}
        with ctx.db.session() as s:
            job = jobs.get(s, job_id)
            job.bytes_done = job.bytes_total or 0
            job.result = {
                **job.result,
                **result,
                "dataTransferredInBytes": manifest.bytesTransferred,
            }
            jobs.finish(job, ctx.clock.now())
    except BaseException as exc:
        if created is not None and req is not None and isinstance(req.target, DatabaseTarget):
            _drop_quietly(created, req.target.database)
        fail(ctx, job_id, exc)
        if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
            raise


def _note(ctx: Context, job_id: str, values: dict[str, Any]) -> None:
    with ctx.db.session() as s:
        job = jobs.get(s, job_id)
        job.result = {**job.result, **values}


def _drop_quietly(ep: pgtools.Endpoint, database: str) -> None:
    with contextlib.suppress(Exception):
        engine.drop_database(ep, database)


def cleanup_abandoned(ctx: Context, s: Session, job: jobs.Job) -> None:
    """After a worker died mid-restore: drop the database it had created (best effort)."""
    database = (job.result or {}).get("createdDatabase")
    if not database:
        return
    try:
        req = RestoreRequest.from_params(job.params)
        assert isinstance(req.target, DatabaseTarget)
        server = servers.get_by_id(s, req.target.server_id)
        creds = connstr.parse(secrets.resolve(s, ctx.cipher, req.target.secret_uri))
        _drop_quietly(pgtools.Endpoint(server.host, server.port, creds), database)
    except Exception:
        pass
