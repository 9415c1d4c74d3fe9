"""Backup: queue a backup (on demand or scheduled), check its source, and run it as a job.

The recovery point row is inserted only after the dump object and the manifest
are stored, in the same transaction that completes the job. A failure deletes
whatever the attempt wrote, so the datastore never holds half a point.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from pgvault import (
    instances,
    jobs,
    policies,
    recovery_points,
    retention,
    servers,
    vault_access,
    vaults,
)
from pgvault.clock import iso
from pgvault.context import Context
from pgvault.engine import dump as engine
from pgvault.engine import pardump, pgtools
from pgvault.errors import Code, Conflict, PgVaultError, UserError, ValidationFailed
from pgvault.jobkinds import replicate
from pgvault.jobkinds.base import JobKind, endpoint
from pgvault.progress import JobProgress, fail
from pgvault.recovery_points import RecoveryPoint


def queue(
    s: Session,
    vault: vaults.Vault,
    inst: instances.Instance,
    now: datetime,
    rule_name: str | None = None,
    retention_tag: str | None = None,
    user_triggered: bool = True,
    slot: datetime | None = None,
) -> jobs.Job:
    """Create the job for a backup (a second concurrent one of the instance is refused).

    On-demand backups take `retention_tag` (Default unless overridden); scheduled ones
    (`slot` given) get their tag from the policy when the point is committed. Metadata
    only, in the caller's transaction (the scheduler claims its slot in the same one): the
    source is probed by the job's Validating phase, so a failed login ends the job, with
    its code, as in Azure.
    """
    if inst.protection_state not in instances.ADHOC_ALLOWED:
        raise Conflict(
            f"Backup instance {inst.name!r} is in state {inst.protection_state}; backups are "
            "not taken in this state.",
            code=Code.UserErrorInvalidProtectionState,
            recommended_action="Resume protection first (resumeProtection).",
        )
    policy = s.get(policies.Policy, inst.policy_id)
    if policy is not None and retention_tag:
        props = policy.properties
        retention.tag_for(
            now,
            retention.tagging_criteria_of(props),
            retention.schedule_of(props),
            override=retention_tag,
        )
    point_id = uuid.uuid4().hex
    job = jobs.create(
        s,
        vault_id=vault.id,
        instance_id=inst.id,
        operation=jobs.BACKUP,
        params={
            "ruleName": rule_name or "BackupWeekly",
            "retentionTag": retention_tag or "Default",
            "scheduled": slot is not None,
            "slot": slot.isoformat() if slot else None,
            "pointId": point_id,
            "location": f"{vault.datastore_prefix}/{inst.id}/{point_id}",
        },
        now=now,
    )
    job.is_user_triggered = user_triggered
    return job


@dataclass(frozen=True)
class Source:
    """What the metadata checks of a source resolved, as plain values: the endpoint to
    probe (None when no login can be tried) and the failures found so far."""

    database: str
    endpoint: pgtools.Endpoint | None
    errors: tuple[PgVaultError, ...]


def resolve_source(
    ctx: Context,
    s: Session,
    vault: vaults.Vault,
    server: servers.Server,
    database: str,
    secret_uri: str,
) -> Source:
    """validateForBackup's metadata checks: the vault identity's roles on the server and
    key vault, and a usable secret. Runs in the caller's transaction; contacts nothing."""
    errors: list[PgVaultError] = [*vault_access.on_server(s, vault, server)]
    denied = vault_access.on_secret(s, vault, secret_uri)
    errors.extend(denied)
    ep: pgtools.Endpoint | None = None
    if not denied:
        try:
            ep = endpoint(s, ctx.cipher, server, secret_uri)
        except PgVaultError as exc:
            errors.append(exc)
    return Source(database, ep, tuple(errors))


def check(source: Source) -> tuple[pgtools.Endpoint, engine.SourceInfo]:
    """validateForBackup's checks, all at once: what `resolve_source` found, then (with no
    metadata session open, over one connection) a login, the backup user's privileges and
    the pg_dump version. Returns the endpoint and what was read of the source, so a backup
    connects only once more, for pg_dump."""
    errors = list(source.errors)
    info: engine.SourceInfo | None = None
    ep = source.endpoint
    if ep is not None:
        try:
            info, missing = engine.probe_source(ep, source.database)
            engine.check_tool_version(info.server_version_num)
            if missing:
                errors.append(_missing_privileges(ep.creds.user, missing))
        except PgVaultError as exc:
            errors.append(exc)
    if errors:
        raise ValidationFailed(errors)
    assert ep is not None
    assert info is not None
    return ep, info


def _missing_privileges(user: str, missing: list[str]) -> UserError:
    shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
    return UserError(
        f"User {user!r} cannot read {len(missing)} object(s) it must back up: {shown}.",
        code=Code.UserErrorMissingDBPermissions,
        recommended_action="Grant CONNECT on the database, USAGE on every schema and "
        "SELECT on every table and sequence (see the README), or use pg_read_all_data.",
    )


def _tag(policy: policies.Policy, when: datetime, params: dict[str, Any]) -> str:
    """On-demand backups take their retentionTagOverride (Default); scheduled ones the
    policy's highest-priority matching tag for the slot they were queued for (a backup that
    ends after the next slot still serves its own)."""
    props = policy.properties
    override = params.get("retentionTag") if not params.get("scheduled") else None
    slot = params.get("slot")
    tag = retention.tag_for(
        datetime.fromisoformat(slot) if params.get("scheduled") and slot else when,
        retention.tagging_criteria_of(props),
        retention.schedule_of(props),
        override=override or None,
    )
    return tag.name


def run(ctx: Context, job_id: str) -> None:
    """Run a claimed backup job to completion or failure."""
    progress = JobProgress(ctx, job_id)
    with ctx.db.session() as s:
        job = jobs.get(s, job_id)
        inst = s.get(instances.Instance, job.instance_id)
        assert inst is not None
        server = s.get(servers.Server, inst.server_id)
        policy = s.get(policies.Policy, inst.policy_id)
        assert server is not None
        assert policy is not None
        params = dict(job.params)
        location = ctx.datastore.child(params["location"])
    try:
        progress.phase("Validating")
        with ctx.db.session() as s:
            vault = s.get(vaults.Vault, inst.vault_id)
            assert vault is not None
            source = resolve_source(ctx, s, vault, server, inst.database, inst.secret_uri)
        ep, info = check(source)
        progress.phase("Transferring data")
        progress.write(0, info.database_size)
        catalog = {
            "vaultName": vault.name,
            "vaultId": vault.arm_id,
            "instanceName": inst.name,
            "instanceId": inst.id,
            "serverId": server.arm_id,
            "database": inst.database,
            "policyName": policy.name,
            "retentionTag": _tag(policy, ctx.clock.now(), params),
        }
        args = (
            ep,
            inst.database,
            server.name,
            location,
            params["pointId"],
            progress,
            info,
            catalog,
        )
        if pardump.enabled(ctx.settings.backup_format):
            manifest = pardump.run(*args, jobs=ctx.settings.jobs or None)
        else:
            manifest = engine.run(*args)
        progress.phase("Committing recovery point")
        with ctx.db.session() as s:
            now = ctx.clock.now()
            policy = s.get(policies.Policy, inst.policy_id) or policy
            point = recovery_points.add(
                s,
                RecoveryPoint(
                    id=params["pointId"],
                    instance_id=inst.id,
                    vault_id=inst.vault_id,
                    created_at=now,
                    location=params["location"],
                    stored_bytes=manifest.storedBytes,
                    dump_bytes=manifest.bytesTransferred,
                    retention_tag=_tag(policy, now, params),
                    policy_name=policy.name,
                    policy_version=policy.version,
                    expires_at=None,
                    manifest=manifest.to_dict(),
                ),
            )
            recovery_points.plan_point(point, policy.properties)
            replicate.after_commit(
                s,
                vaults.by_id(s, inst.vault_id),
                point,
                now,
                ctx.settings.replication_delay_seconds,
            )
            job = jobs.get(s, job_id)
            job.recovery_point_id = params["pointId"]
            job.bytes_done = manifest.bytesTransferred
            job.bytes_total = manifest.bytesTransferred
            job.result = {
                "dataTransferredInBytes": manifest.bytesTransferred,
                "storedBytes": manifest.storedBytes,
                "dataSourceSize": manifest.dataSourceSize,
                "recoveryPointTime": iso(now),
                "retentionTag": point.retention_tag,
            }
            jobs.finish(job, now)
    except BaseException as exc:
        cleanup(ctx, params["location"])
        fail(ctx, job_id, exc)
        if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
            raise


def cleanup(ctx: Context, location: str) -> None:
    """Delete the objects of a point that never became visible (idempotent)."""
    with contextlib.suppress(Exception):  # the next sweep tries again
        ctx.datastore.child(location).delete_all()


class Backup(JobKind):
    operation: ClassVar[str] = jobs.BACKUP

    def run(self, ctx: Context, job_id: str) -> None:
        run(ctx, job_id)

    def abandoned(self, ctx: Context, job: jobs.Job) -> None:
        """Delete the objects of the point the lost worker was writing."""
        if job.params.get("location"):
            cleanup(ctx, job.params["location"])

    def retry(self, s: Session, lost: jobs.Job, now: datetime) -> jobs.Job | None:
        """The policy's rule: a *scheduled* backup whose worker died runs again as a new
        attempt (a new job writing a new point); an on-demand one is left to its user."""
        return retry_scheduled(s, lost, now)


def retry_scheduled(s: Session, lost: jobs.Job, now: datetime) -> jobs.Job | None:
    """A new attempt of a lost scheduled backup, if its instance is still protected."""
    params = dict(lost.params or {})
    if not params.get("scheduled") or not lost.instance_id:
        return None
    inst = s.get(instances.Instance, lost.instance_id)
    if inst is None or inst.protection_state not in instances.ADHOC_ALLOWED:
        return None
    point_id = uuid.uuid4().hex
    location = str(params.get("location") or "")
    params.update(
        pointId=point_id,
        location=f"{location.rsplit('/', 1)[0]}/{point_id}",
        attempt=int(params.get("attempt") or 1) + 1,
        retryOf=lost.id,
    )
    job = jobs.create(
        s,
        vault_id=lost.vault_id,
        instance_id=lost.instance_id,
        operation=jobs.BACKUP,
        params=params,
        now=now,
        priority=lost.priority,
    )
    job.is_user_triggered = False
    return job
