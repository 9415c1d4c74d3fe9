"""Jobs: the durable record of every backup and restore, and the queue workers take them from.

A job is created `InProgress` in phase `Queued` with no worker; a worker claims it
with a conditional UPDATE (safe across processes and machines), heartbeats while
it runs, and finishes it Completed or Failed. A job whose worker stopped
heartbeating is failed by the next sweep, with the reason, so none stays
InProgress forever.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Integer,
    String,
    Text,
    case,
    false,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from pgvault.errors import Code, Conflict, JobCancelled, NotFound, PgVaultError
from pgvault.orm import Base, UTCDateTime

IN_PROGRESS = "InProgress"
COMPLETED = "Completed"
FAILED = "Failed"
CANCELLED = "Cancelled"
COMPLETED_WITH_WARNINGS = "CompletedWithWarnings"
TERMINAL = (COMPLETED, FAILED, CANCELLED, COMPLETED_WITH_WARNINGS)

BACKUP = "Backup"
RESTORE = "Restore"


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    vault_id: Mapped[str] = mapped_column(ForeignKey("backup_vaults.id"), index=True)
    instance_id: Mapped[str | None] = mapped_column(ForeignKey("backup_instances.id"))
    operation: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32), index=True)
    phase: Mapped[str] = mapped_column(String(64))
    phases: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_total: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error_code: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    recommended_action: Mapped[str | None] = mapped_column(Text)
    recovery_point_id: Mapped[str | None] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    is_user_triggered: Mapped[bool] = mapped_column(default=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: A cancel asked for while the job runs; its worker stops at its next progress report.
    cancel_requested: Mapped[bool] = mapped_column(default=False, server_default=false())


class Operation(Base):
    """A long-running operation as the ARM async pattern reports it."""

    __tablename__ = "operations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[str | None] = mapped_column(String(36))
    resource_id: Mapped[str | None] = mapped_column(String(500))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


def create(
    s: Session,
    *,
    vault_id: str,
    instance_id: str | None,
    operation: str,
    params: dict[str, Any],
    now: datetime,
    recovery_point_id: str | None = None,
    priority: int = 0,
) -> Job:
    """Queue a job. At most one backup per instance runs at a time."""
    if operation == BACKUP and instance_id and running_backup(s, instance_id):
        raise Conflict(
            "A backup of this instance is already in progress. Wait for it to finish "
            "(`pgvault job list`) and try again.",
            code=Code.UserErrorMaxConcurrentOperationLimitReached,
        )
    job = Job(
        id=str(uuid.uuid4()),
        vault_id=vault_id,
        instance_id=instance_id,
        operation=operation,
        category=operation,
        status=IN_PROGRESS,
        phase="Queued",
        phases=[],
        bytes_done=0,
        created_at=now,
        params=params,
        result={},
        recovery_point_id=recovery_point_id,
        priority=priority,
    )
    s.add(job)
    s.flush()
    return job


def running_backup(s: Session, instance_id: str) -> Job | None:
    return s.scalar(
        select(Job).where(
            Job.instance_id == instance_id, Job.operation == BACKUP, Job.status == IN_PROGRESS
        )
    )


def get(s: Session, job_id: str, vault_id: str | None = None) -> Job:
    job = s.get(Job, job_id.lower())
    if job is None or (vault_id and job.vault_id != vault_id):
        raise NotFound(
            f"Job {job_id!r} not found. List jobs with `pgvault job list`.",
            code=Code.ResourceNotFound,
        )
    return job


@dataclass(frozen=True, slots=True)
class JobRow:
    """A job as a list shows it: the columns of `Job` a response needs, read without the ORM.

    Hydrating ORM objects (identity map, change tracking) was most of the cost of listing
    jobs under load; a Core select of these columns builds plain rows.
    """

    id: str
    vault_id: str
    instance_id: str | None
    operation: str
    category: str
    status: str
    phase: str
    phases: list[dict[str, Any]]
    bytes_done: int
    bytes_total: int | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    heartbeat_at: datetime | None
    error_code: str | None
    error_message: str | None
    recommended_action: str | None
    recovery_point_id: str | None
    params: dict[str, Any]
    result: dict[str, Any]
    is_user_triggered: bool
    worker_id: str | None


_ROW_COLUMNS = [getattr(Job, f) for f in JobRow.__dataclass_fields__]


def list_rows(s: Session, vault_ids: list[str], limit: int = 200, offset: int = 0) -> list[JobRow]:
    """A page of these vaults' jobs, newest first, as plain rows (one Core select)."""
    q = (
        select(*_ROW_COLUMNS)
        .where(Job.vault_id.in_(vault_ids))
        .order_by(Job.created_at.desc(), Job.id)
        .offset(offset)
        .limit(limit)
    )
    return [JobRow(*row) for row in s.execute(q)]


def list_jobs(s: Session, vault_ids: list[str], limit: int = 200, offset: int = 0) -> list[Job]:
    q = (
        select(Job)
        .where(Job.vault_id.in_(vault_ids))
        .order_by(Job.created_at.desc(), Job.id)
        .offset(offset)
        .limit(limit)
    )
    return list(s.scalars(q))


def find(
    s: Session,
    vault_ids: list[str],
    *,
    limit: int = 200,
    operation: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    instance_id: str | None = None,
) -> list[Job]:
    """The newest jobs of these vaults matching the filters (one query, newest first)."""
    q = select(Job).where(Job.vault_id.in_(vault_ids))
    if instance_id:
        q = q.where(Job.instance_id == instance_id)
    if operation:
        q = q.where(Job.operation == operation)
    if status:
        q = q.where(Job.status == status)
    if since is not None:
        q = q.where(Job.created_at >= since)
    return list(s.scalars(q.order_by(Job.created_at.desc(), Job.id).limit(limit)))


def status_counts(s: Session, vault_ids: list[str], since: datetime) -> dict[str, int]:
    """How many jobs of these vaults started since `since`, by status (one grouped query)."""
    q = (
        select(Job.status, func.count())
        .where(Job.vault_id.in_(vault_ids), Job.created_at >= since)
        .group_by(Job.status)
    )
    return {status: count for status, count in s.execute(q)}


def status_counts_since(
    s: Session, vault_ids: list[str], sinces: list[datetime]
) -> list[dict[str, int]]:
    """`status_counts` for several start times in one grouped query (the Backup center's
    last 24 hours and last 7 days read the jobs table once, not once per window)."""
    if not sinces:
        return []
    windows = [func.sum(case((Job.created_at >= since, 1), else_=0)) for since in sinces]
    q = (
        select(Job.status, *windows)
        .where(Job.vault_id.in_(vault_ids), Job.created_at >= min(sinces))
        .group_by(Job.status)
    )
    counts: list[dict[str, int]] = [{} for _ in sinces]
    for status, *numbers in s.execute(q):
        for found, n in zip(counts, numbers, strict=True):
            if n:
                found[status] = int(n)
    return counts


def claim_next(
    s: Session, worker_id: str, now: datetime, held_back: Collection[str] = ()
) -> Job | None:
    """Take the most urgent unclaimed job; the conditional UPDATE makes it race-free.

    Backups of the instances in `held_back` wait (their server is at its limit)."""
    query = select(Job.id).where(Job.status == IN_PROGRESS, Job.worker_id.is_(None))
    if held_back:
        query = query.where(or_(Job.operation != BACKUP, Job.instance_id.not_in(held_back)))
    candidates = s.scalars(query.order_by(Job.priority.desc(), Job.created_at).limit(5)).all()
    for job_id in candidates:
        res = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.worker_id.is_(None), Job.status == IN_PROGRESS)
            .values(worker_id=worker_id, heartbeat_at=now, started_at=now, phase="Starting")
        )
        if res.rowcount == 1:  # type: ignore[attr-defined]
            s.flush()
            job = s.get(Job, job_id)
            if job is not None:
                s.refresh(job)
            return job
    return None


def claim(s: Session, job_id: str, worker_id: str, now: datetime) -> Job | None:
    """Take the queued job `job_id` (an executor handed it over); None if it is already
    taken or over. The conditional UPDATE makes a job run once even when its queue entry
    is delivered twice (e.g. re-queued after its worker was lost before claiming it)."""
    res = s.execute(
        update(Job)
        .where(Job.id == job_id, Job.worker_id.is_(None), Job.status == IN_PROGRESS)
        .values(worker_id=worker_id, heartbeat_at=now, started_at=now, phase="Starting")
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return None
    job = s.get(Job, job_id)
    if job is not None:
        s.refresh(job)
    return job


@dataclass
class Progress:
    phase: str | None = None
    bytes_done: int | None = None
    bytes_total: int | None = None


def start_phase(job: Job, name: str, now: datetime) -> None:
    """Close the running phase and open `name` (phases become the job's subTasks)."""
    phases = [dict(p) for p in job.phases]
    for p in phases:
        if p.get("status") == "InProgress":
            p["status"], p["end"] = "Completed", now.isoformat()
    phases.append({"name": name, "status": "InProgress", "start": now.isoformat()})
    job.phases, job.phase = phases, name


def finish(
    job: Job, now: datetime, error: PgVaultError | None = None, status: str | None = None
) -> None:
    """Mark a job terminal; the running phase ends with the same outcome."""
    final = status or (FAILED if error else COMPLETED)
    phases = [dict(p) for p in job.phases]
    for p in phases:
        if p.get("status") == "InProgress":
            p["status"], p["end"] = ("Failed" if error else "Completed"), now.isoformat()
    job.phases = phases
    job.status, job.ended_at = final, now
    job.phase = "Failed" if error else "Done"
    if error is not None:
        job.error_code, job.error_message = error.code.value, error.message
        job.recommended_action = error.recommended_action


def request_cancel(
    s: Session, job: Job, now: datetime, uncancellable_phases: tuple[str, ...]
) -> str:
    """Cancel a job: a queued one ends Cancelled at once; a running one is flagged, and its
    worker stops cleanly at its next progress report. Refused once the job has reached one
    of `uncancellable_phases` (a restore's data transfer), atomically with the phase change
    (see `enter_phase`). Returns the job's status after the call."""
    if job.status in TERMINAL:
        raise Conflict(
            f"Job {job.id} has already ended ({job.status}).", code=Code.JobAlreadyFinished
        )
    queued = s.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == IN_PROGRESS, Job.worker_id.is_(None))
        .values(status=CANCELLED, phase="Cancelled", ended_at=now, cancel_requested=True)
    )
    if queued.rowcount == 1:  # type: ignore[attr-defined]
        s.refresh(job)
        job.error_code, job.error_message = (
            Code.JobCancelledByUser.value,
            "Cancelled before it ran.",
        )
        return CANCELLED
    flagged = s.execute(
        update(Job)
        .where(
            Job.id == job.id,
            Job.status == IN_PROGRESS,
            Job.phase.not_in(uncancellable_phases or ("",)),
        )
        .values(cancel_requested=True)
    )
    s.refresh(job)
    if flagged.rowcount != 1:  # type: ignore[attr-defined]
        if job.status in TERMINAL:
            raise Conflict(
                f"Job {job.id} has already ended ({job.status}).", code=Code.JobAlreadyFinished
            )
        raise Conflict(
            f"Job {job.id} is in phase {job.phase!r}: a restore cannot be cancelled once its "
            "data transfer has started.",
            code=Code.JobCannotBeCancelled,
        )
    return IN_PROGRESS


def enter_phase(s: Session, job_id: str, name: str, now: datetime) -> None:
    """Open phase `name` unless a cancel was asked for (then JobCancelled): one conditional
    UPDATE, so a cancel and a phase change never both win."""
    job = s.get(Job, job_id)
    assert job is not None
    phases = [dict(p) for p in job.phases]
    for p in phases:
        if p.get("status") == "InProgress":
            p["status"], p["end"] = "Completed", now.isoformat()
    phases.append({"name": name, "status": "InProgress", "start": now.isoformat()})
    res = s.execute(
        update(Job)
        .where(Job.id == job_id, Job.cancel_requested.is_(False))
        .values(phases=phases, phase=name, bytes_done=0)
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        raise JobCancelled()
    s.expire(job)


def cancel_asked(s: Session, job_id: str) -> bool:
    return bool(s.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def heartbeat(s: Session, worker_id: str, now: datetime) -> None:
    s.execute(
        update(Job)
        .where(Job.worker_id == worker_id, Job.status == IN_PROGRESS)
        .values(heartbeat_at=now)
    )


def stale(s: Session, now: datetime, after: timedelta, dead_workers: set[str]) -> list[Job]:
    """Running jobs whose worker is known dead or has not heartbeated within `after`."""
    rows = s.scalars(select(Job).where(Job.status == IN_PROGRESS, Job.worker_id.is_not(None))).all()
    return [
        j
        for j in rows
        if j.worker_id in dead_workers or (j.heartbeat_at is None or j.heartbeat_at < now - after)
    ]


def new_operation(
    s: Session,
    now: datetime,
    *,
    job_id: str | None = None,
    resource_id: str | None = None,
    error: PgVaultError | None = None,
) -> Operation:
    """Record a finished long-running operation (its work continues, if at all, as a job)."""
    op = Operation(
        id=str(uuid.uuid4()),
        status="Failed" if error else "Succeeded",
        job_id=job_id,
        resource_id=resource_id,
        error=error.to_body()["error"] if error else None,
        started_at=now,
        ended_at=now,
    )
    s.add(op)
    s.flush()
    return op


def get_operation(s: Session, op_id: str) -> Operation:
    op = s.get(Operation, op_id.lower())
    if op is None:
        raise NotFound(f"Operation {op_id!r} not found.", code=Code.ResourceNotFound)
    return op
