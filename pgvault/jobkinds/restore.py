"""Restore: check a request ("Review + restore"), queue it, and run it as a job.

Two targets, as in Azure: a new database on a registered server in the vault's
region (everything owned by the key-vault user; grants are not replayed), or dump
files in a storage container (owners and grants kept, for the user's pg_restore).
Checking runs every check and reports all failures at once, in two steps: `resolve`
reads metadata in the caller's short transaction into a `Plan` of plain values, then
`check` probes the target with no metadata session open, connecting once. The job
repeats only the metadata checks; CREATE DATABASE itself refuses an existing name.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from pgvault import (
    instances,
    jobs,
    recovery_points,
    regions,
    rehydration,
    replicas,
    restore_claims,
    servers,
    vault_access,
    vaults,
)
from pgvault.clock import iso
from pgvault.context import Context
from pgvault.engine import load as engine
from pgvault.engine import parload, pgtools
from pgvault.engine.manifest import FORMAT_PARALLEL
from pgvault.errors import BadRequest, Code, PgVaultError, UserError, ValidationFailed
from pgvault.jobkinds.base import JobKind, endpoint
from pgvault.jobkinds.rehydrate import rehydrate
from pgvault.progress import JobProgress, fail
from pgvault.storage import accounts
from pgvault.storage.backends import Location

log = logging.getLogger("pgvault.workers")

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
    #: Cross-region restore: the vault's paired region, whose replica is restored (only
    #: to targets in that region); None for a restore in the vault's own region.
    secondary_region: str | None = None
    #: pgvault extensions (`pgvaultOptions` in the API): read every object before the
    #: target is touched; restore only these tables (`schema.table`) / schemas.
    verify_first: bool = False
    tables: tuple[str, ...] = ()
    schemas: tuple[str, ...] = ()

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
            "secondaryRegion": self.secondary_region,
            "verifyFirst": self.verify_first,
            "tables": list(self.tables),
            "schemas": list(self.schemas),
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
            params.get("secondaryRegion"),
            bool(params.get("verifyFirst", False)),
            tuple(params.get("tables") or ()),
            tuple(params.get("schemas") or ()),
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


@dataclass(frozen=True)
class Plan:
    """What the metadata checks of a restore request resolved, as plain values.

    `errors` are the failures found so far; `endpoint` (database target) or `container`
    (files target) is None when there is nothing to probe.
    """

    request: RestoreRequest
    vault_id: str
    instance_id: str
    point_id: str
    point_time: datetime
    point_location: str
    source_major: int
    needs_rehydration: bool
    errors: tuple[PgVaultError, ...]
    endpoint: pgtools.Endpoint | None = None
    server_name: str = ""
    container: Location | None = None
    container_name: str = ""
    #: The target container's identity for prefix claims (account id and container name).
    container_key: str = ""
    #: Cross-region restore: read the replica in this region's datastore, never the primary.
    secondary_region: str | None = None


def _cross_subscription_blocked(vault: vaults.Vault, subscription: str) -> bool:
    state = (
        vault.properties.get("featureSettings", {})
        .get("crossSubscriptionRestoreSettings", {})
        .get("state", "Enabled")
    )
    return str(state).lower() != "enabled" and subscription.lower() != vault.subscription_id


def _resolve_database(
    ctx: Context,
    s: Session,
    vault: vaults.Vault,
    inst: instances.Instance,
    t: DatabaseTarget,
    errors: list[PgVaultError],
    region: str,
) -> tuple[pgtools.Endpoint | None, str]:
    """The target server's metadata checks; returns the endpoint to probe and the server's
    name (no endpoint when the server or the secret cannot be used)."""
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
        return None, ""
    region_error = _target_region(vault, server.location, f"Target server {server.name!r}", region)
    if region_error is not None:
        errors.append(region_error)
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
    errors.extend(vault_access.on_server(s, vault, server))
    try:
        denied = vault_access.on_secret(s, vault, t.secret_uri)
        errors.extend(denied)
        if denied:
            return None, server.name
        return endpoint(s, ctx.cipher, server, t.secret_uri), server.name
    except PgVaultError as exc:
        errors.append(exc)
        return None, server.name


def _target_region(
    vault: vaults.Vault, target_region: str, what: str, region: str
) -> UserError | None:
    """A target must be in the region restored to: the vault's own, or (cross-region
    restore) its paired secondary, never back in the primary."""
    if target_region == region:
        return None
    if region != vault.location and target_region == vault.location:
        return UserError(
            f"{what} is in the primary region {vault.location}; a cross-region restore "
            f"restores only to {region}.",
            code=Code.UserErrorCrossRegionRestoreToPrimaryNotSupported,
            recommended_action="Pick a target in the secondary region, or restore to the "
            "primary region with an ordinary restore.",
        )
    return UserError(
        f"{what} is in {target_region}; this restore writes only to targets in {region}.",
        code=Code.UserErrorTargetRegionMismatch,
        recommended_action=f"Pick a target in {region}"
        + (", or use cross-region restore." if region == vault.location else "."),
    )


def _resolve_files(
    ctx: Context,
    s: Session,
    vault: vaults.Vault,
    t: FilesTarget,
    errors: list[PgVaultError],
    region: str,
) -> tuple[Location | None, str, str]:
    """The target container's metadata checks; returns its location (not yet contacted),
    its name and its claim key (no location when the container cannot be used)."""
    check_file_prefix(t.file_prefix)
    try:
        account, container = accounts.resolve_target(s, t.url, t.arm_id)
    except PgVaultError as exc:
        errors.append(exc)
        return None, "", ""
    key = f"{account.id}/{container.name.lower()}"
    region_error = _target_region(
        vault, account.location, f"Storage account {account.name!r}", region
    )
    if region_error is not None:
        errors.append(region_error)
    if _cross_subscription_blocked(vault, account.subscription_id) and not t.arm_id:
        errors.append(
            UserError(
                f"Vault {vault.name!r} has cross-subscription restore disabled, and storage "
                f"account {account.name!r} is in another subscription.",
                code=Code.UserErrorCrossSubscriptionRestoreDisabled,
                recommended_action="Restore to storage in the vault's subscription.",
            )
        )
    denied = vault_access.on_container(s, vault, account, container.name)
    if denied:
        errors.extend(denied)
        return None, container.name, key
    try:
        location = accounts.container_location(
            ctx.cipher, account, container.name, ctx.storage_policy
        )
    except PgVaultError as exc:  # a path or endpoint the operator's policy now refuses
        errors.append(exc)
        return None, container.name, key
    return location, container.name, key


def resolve(
    ctx: Context, s: Session, vault: vaults.Vault, inst: instances.Instance, req: RestoreRequest
) -> Plan:
    """The metadata checks of "Review + restore", in the caller's transaction (contacts
    nothing): the point and its source store, the target, the vault identity's roles, the
    secret. Failures are collected in the plan; `check` adds the probes' and raises."""
    point = recovery_points.get(s, inst.id, req.recovery_point_id)
    now = ctx.clock.now()
    location, region = point.location, vault.location
    if req.secondary_region is None:
        rehydration.check_source(
            point, req.source_datastore, req.rehydration_priority, req.rehydration_duration, now
        )
    else:
        region = check_secondary(vault, req.secondary_region)
        location = _replica_location(s, point.id, region)
    errors: list[PgVaultError] = []
    if req.tables or req.schemas:
        parallel = point.manifest.get("version") == FORMAT_PARALLEL
        if not parallel or not isinstance(req.target, DatabaseTarget):
            errors.append(_no_partial(parallel))
    ep: pgtools.Endpoint | None = None
    container: Location | None = None
    server_name = container_name = container_key = ""
    if isinstance(req.target, DatabaseTarget):
        ep, server_name = _resolve_database(ctx, s, vault, inst, req.target, errors, region)
    else:
        container, container_name, container_key = _resolve_files(
            ctx, s, vault, req.target, errors, region
        )
    return Plan(
        request=req,
        vault_id=vault.id,
        instance_id=inst.id,
        point_id=point.id,
        point_time=point.created_at,
        point_location=location,
        source_major=int(point.manifest.get("serverVersionNum", 0)) // 10000,
        needs_rehydration=req.secondary_region is None
        and rehydration.needed(point, req.source_datastore, now),
        errors=tuple(errors),
        endpoint=ep,
        server_name=server_name,
        container=container,
        container_name=container_name,
        container_key=container_key,
        secondary_region=req.secondary_region and region,
    )


def check_secondary(vault: vaults.Vault, region: str) -> str:
    """The region a cross-region restore of `vault` may read from and write to: only its
    paired secondary, and only with Cross Region Restore on. Returns it normalised."""
    if not vaults.crr_enabled(vault.properties):
        raise UserError(
            f"Vault {vault.name!r} does not have Cross Region Restore enabled.",
            code=Code.UserErrorCrossRegionRestoreNotEnabled,
        )
    name = regions.normalize(region)
    secondary = regions.paired(vault.location)
    if name == vault.location:
        raise UserError(
            f"{name} is vault {vault.name!r}'s primary region; cross-region restore goes only "
            f"from the primary to the secondary region ({secondary}).",
            code=Code.UserErrorCrossRegionRestoreToPrimaryNotSupported,
        )
    if name != secondary:
        raise UserError(
            f"{name} is not vault {vault.name!r}'s secondary region: {vault.location} is paired "
            f"with {secondary}.",
            code=Code.UserErrorCrossRegionRestoreRegionNotPaired,
        )
    return name


def _replica_location(s: Session, point_id: str, region: str) -> str:
    """Where the point's verified replica is in the secondary's vault tier."""
    replica = replicas.get(s, point_id, region)
    if replica is None:
        raise UserError(
            f"Recovery point {point_id!r} is not available in {region} yet.",
            code=Code.UserErrorRecoveryPointNotReplicated,
        )
    if replica.tier != recovery_points.VAULT_STORE:
        raise UserError(
            f"Recovery point {point_id!r} is archived; its replica in {region} is in the "
            "archive tier and cannot be restored across regions.",
            code=Code.UserErrorCrossRegionRestoreArchivedPoint,
        )
    return replica.location


def _probe_database(plan: Plan, ep: pgtools.Endpoint, errors: list[PgVaultError]) -> dict[str, Any]:
    """One connection to the target server: a login, its version, the name, CREATEDB."""
    assert isinstance(plan.request.target, DatabaseTarget)
    database = plan.request.target.database
    try:
        info = engine.inspect_target(ep, database)
    except PgVaultError as exc:
        errors.append(exc)
        return {}
    target_major = info.server_version_num // 10000
    if target_major < plan.source_major:
        errors.append(
            UserError(
                f"The target server runs PostgreSQL {target_major}, older than the "
                f"source's {plan.source_major}; restoring to a lower major version is not supported.",
                code=Code.UserErrorRestoreToLowerVersion,
                recommended_action="Restore to a server of the same or a newer major version.",
            )
        )
    if info.database_exists:
        errors.append(
            UserError(
                f"Database {database!r} already exists on server {plan.server_name!r}.",
                code=Code.UserErrorDatabaseNameAlreadyInUse,
                recommended_action="Choose a new target database name (restores never overwrite).",
            )
        )
    if not info.can_create_db:
        errors.append(
            UserError(
                f"User {ep.creds.user!r} cannot create databases on server {plan.server_name!r}.",
                code=Code.UserErrorMissingDBPermissions,
                recommended_action=f"Run on the target: ALTER ROLE {pgtools.quote_ident(ep.creds.user)} "
                "CREATEDB;",
            )
        )
    return {"targetServerVersionNum": info.server_version_num}


def _files_taken(plan: Plan, location: Location) -> list[PgVaultError]:
    """The files a restore would write that already exist (restores never overwrite)."""
    assert isinstance(plan.request.target, FilesTarget)
    prefix = plan.request.target.file_prefix
    return [
        UserError(
            f"{name!r} already exists in container {plan.container_name!r}.",
            code=Code.UserErrorFileAlreadyExists,
            recommended_action="Choose another file prefix (restores never overwrite).",
        )
        for name in (f"{prefix}.dump", f"{prefix}.manifest.json", f"{prefix}/toc.dat")
        if location.exists(name)
    ]


def _probe_files(plan: Plan, location: Location, errors: list[PgVaultError]) -> dict[str, Any]:
    """The target container: writable, and the restore's files not there yet."""
    try:
        location.check_writable()
    except PgVaultError as exc:
        # The backend's own words stay in the log: they would tell a caller what the
        # endpoint answered (reachability), which a refused target must not reveal.
        log.info("container %s is not writable: %s", plan.container_name, exc.message)
        errors.append(
            UserError(
                f"Cannot write to container {plan.container_name!r}.",
                code=Code.UserErrorContainerNotAccessible,
                recommended_action="Check the storage account's endpoint and credentials.",
            )
        )
    errors.extend(_files_taken(plan, location))
    return {"containerWritable": True}


def check(plan: Plan) -> dict[str, Any]:
    """Every check of "Review + restore": the plan's failures plus the target's probes, run
    with no metadata session open. Raises ValidationFailed listing all failures; returns
    what the probes found, for the job's parameters."""
    errors = list(plan.errors)
    found: dict[str, Any] = {}
    if plan.endpoint is not None:
        found = _probe_database(plan, plan.endpoint, errors)
    elif plan.container is not None:
        found = _probe_files(plan, plan.container, errors)
    if errors:
        raise ValidationFailed(errors)
    return found


def queue(ctx: Context, plan: Plan) -> jobs.Job:
    """Check, then create the restore job in one short transaction (the probes' results go
    into its parameters; the job repeats only the metadata checks). A files target's
    (container, prefix) is claimed in the same transaction: of simultaneous requests for
    one prefix, one is queued and the others fail with UserErrorFileAlreadyExists."""
    found = check(plan)
    req = plan.request
    with ctx.db.session() as s:
        job = jobs.create(
            s,
            vault_id=plan.vault_id,
            instance_id=plan.instance_id,
            operation=jobs.RESTORE,
            params={**req.to_params(), "checks": found},
            now=ctx.clock.now(),
            recovery_point_id=req.recovery_point_id,
        )
        job.result = {"recoveryPointTime": iso(plan.point_time)}
        if isinstance(req.target, FilesTarget):
            restore_claims.claim(
                s,
                plan.container_key,
                plan.container_name,
                req.target.file_prefix,
                job.id,
                ctx.clock.now(),
            )
        if str(req.rehydration_priority or "").lower() == "high":
            job.priority = rehydration.HIGH_PRIORITY
    return job


def _recheck(ctx: Context, job_id: str) -> Plan:
    """At job start: the metadata checks again (roles, secret, point, target), no probes;
    a files target is also checked for files written since the request."""
    with ctx.db.session() as s:
        job = jobs.get(s, job_id)
        req = RestoreRequest.from_params(job.params)
        inst = s.get(instances.Instance, job.instance_id)
        assert inst is not None
        vault = s.get(vaults.Vault, inst.vault_id)
        assert vault is not None
        plan = resolve(ctx, s, vault, inst, req)
    errors = list(plan.errors)
    if plan.container is not None:
        errors.extend(_files_taken(plan, plan.container))
    if errors:
        raise ValidationFailed(errors)
    return plan


def run(ctx: Context, job_id: str) -> None:
    """Run a claimed restore job; a database it created is dropped if anything fails."""
    progress = JobProgress(ctx, job_id)
    created: pgtools.Endpoint | None = None
    database = ""
    try:
        progress.phase("Validating")
        plan = _recheck(ctx, job_id)
        req = plan.request
        if plan.needs_rehydration:
            progress.phase("Rehydrating")
            rehydrate(ctx, plan.point_id, req.rehydration_duration)
        store = ctx.site(plan.secondary_region)[0] if plan.secondary_region else ctx.datastore
        source = store.child(plan.point_location)
        manifest = engine.load_manifest(source)
        if (req.tables or req.schemas) and (
            not manifest.parallel or not isinstance(req.target, DatabaseTarget)
        ):
            raise _no_partial(manifest.parallel)
        if req.verify_first or not manifest.parallel:
            # Format 2 verifies each object while streaming it (one read of the datastore).
            progress.phase("Verifying recovery point", manifest.storedBytes)
            engine.verify(source, manifest, progress)
        if isinstance(req.target, DatabaseTarget):
            assert plan.endpoint is not None
            database = req.target.database
            progress.phase("Creating database")
            engine.create_database(plan.endpoint, database)
            created = plan.endpoint
            _note(ctx, job_id, {"createdDatabase": database})
            progress.phase("Transferring data", manifest.storedBytes)
            if manifest.parallel:
                parload.into_database(
                    plan.endpoint,
                    database,
                    source,
                    manifest,
                    progress,
                    jobs=ctx.settings.jobs or None,
                    tables=list(req.tables),
                    schemas=list(req.schemas),
                )
            else:
                engine.into_database(plan.endpoint, database, source, manifest, progress)
            result: dict[str, Any] = {
                "recoveryDestination": f"{req.target.server_id}/databases/{database}"
            }
        else:
            assert plan.container is not None
            progress.phase("Transferring data", manifest.storedBytes)
            into_files = parload.into_files if manifest.parallel else engine.into_files
            files = into_files(
                source,
                manifest,
                plan.container,
                req.target.file_prefix,
                progress,
                on_created=lambda names: _note(ctx, job_id, {"createdFiles": names}),
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
            restore_claims.release(s, job_id)
    except BaseException as exc:
        if created is not None:
            _drop_quietly(created, database)
        fail(ctx, job_id, exc)
        _release_claim(ctx, job_id)
        if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
            raise


def _no_partial(parallel: bool) -> UserError:
    why = (
        "it was taken in the single-stream format (before table-level restore existed)"
        if not parallel
        else "tables and schemas are chosen only for a restore as a database"
    )
    return UserError(
        f"This restore cannot choose tables or schemas: {why}.",
        code=Code.UserErrorPartialRestoreNotSupported,
        recommended_action="Restore the whole point, or a newer point as a database.",
    )


def _release_claim(ctx: Context, job_id: str) -> None:
    # best effort: a claim whose job ended is stale, and the next claim takes it over
    with contextlib.suppress(Exception), ctx.db.session() as s:
        restore_claims.release(s, job_id)


def _remove_created_files(ctx: Context, job: jobs.Job) -> None:
    """The files an abandoned restore had created (never another's: it held the claim)."""
    names = (job.result or {}).get("createdFiles") or []
    if not names or (job.result or {}).get("files"):
        return
    req = RestoreRequest.from_params(job.params)
    if not isinstance(req.target, FilesTarget):
        return
    with ctx.db.session() as s:
        account, container = accounts.resolve_target(s, req.target.url, req.target.arm_id)
        location = accounts.container_location(
            ctx.cipher, account, container.name, ctx.storage_policy
        )
    for name in names:
        with contextlib.suppress(PgVaultError):
            location.delete(str(name))


def _note(ctx: Context, job_id: str, values: dict[str, Any]) -> None:
    with ctx.db.session() as s:
        job = jobs.get(s, job_id)
        job.result = {**job.result, **values}


def _drop_quietly(ep: pgtools.Endpoint, database: str) -> None:
    with contextlib.suppress(Exception):  # best effort: the failure that got us here counts
        engine.drop_database(ep, database)


def _created_by(ctx: Context, job: jobs.Job) -> tuple[pgtools.Endpoint, str] | None:
    """The database a restore job created, and where (None if it created none)."""
    database = (job.result or {}).get("createdDatabase")
    if not database:
        return None
    req = RestoreRequest.from_params(job.params)
    assert isinstance(req.target, DatabaseTarget)
    with ctx.db.session() as s:
        server = servers.get_by_id(s, req.target.server_id)
        return endpoint(s, ctx.cipher, server, req.target.secret_uri), str(database)


class Restore(JobKind):
    operation: ClassVar[str] = jobs.RESTORE
    #: As in Azure: no cancel once the data transfer starts (CREATE DATABASE included).
    uncancellable_phases: ClassVar[tuple[str, ...]] = ("Creating database", "Transferring data")

    def run(self, ctx: Context, job_id: str) -> None:
        run(ctx, job_id)

    def abandoned(self, ctx: Context, job: jobs.Job) -> None:
        """Drop the database or remove the files the lost worker had created (best effort:
        the server or the secret may be gone; the job's failure says the restore did not
        happen), and release its claim on a file prefix."""
        try:
            _remove_created_files(ctx, job)
        except PgVaultError as exc:
            log.warning("restore %s: cannot remove the files it created: %s", job.id, exc)
        _release_claim(ctx, job.id)
        try:
            created = _created_by(ctx, job)
        except PgVaultError as exc:
            log.warning("restore %s: cannot reach the database it created: %s", job.id, exc)
            return
        if created is not None:
            _drop_quietly(*created)
