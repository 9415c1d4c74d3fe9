"""The executor seam: who runs queued jobs. One interface, two executors.

A job is always a pgvault `Job` row first (the user-visible record: status, phases,
progress). What differs is how a worker learns of it:

- **embedded** (default; SQLite or PostgreSQL): the `WorkerPool` threads inside
  `pgvault serve` claim `Job` rows with a conditional UPDATE (`workers.py`).
- **procrastinate** (PostgreSQL metadata only): every new queued `Job` row is deferred
  as a Procrastinate job *on the same connection, in the same transaction* (a commit
  hook on the metadata sessions), so a job is queued exactly when its row commits and
  never otherwise. `pgvault worker` processes (`procworker.py`) run them; `pgvault
  serve` only defers. Procrastinate's `lock` enforces the per-server limits and the
  one-job-per-instance rule at fetch time; its priority puts High rehydrations first.

Like Airflow's local and distributed executors: the job kinds never know which one runs.
"""

from __future__ import annotations

import logging
import weakref
import zlib
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from pgvault import instances, jobs
from pgvault.config import Settings
from pgvault.context import Context

log = logging.getLogger("pgvault.executors")

#: The one Procrastinate task: run the pgvault job whose id it carries.
TASK = "pgvault.run_job"
QUEUE = "pgvault"
_NEW_JOBS = "pgvault.new_jobs"
#: Session factories whose commits already defer (install_deferral is idempotent).
_HOOKED: weakref.WeakSet[sessionmaker[Session]] = weakref.WeakSet()


class Executor(Protocol):
    """What `pgvault serve` holds: start and stop with the app, woken after a job is queued."""

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...

    def notify(self) -> None: ...


class NoExecutor:
    """`serve --no-worker` on the embedded executor: other `serve` processes run the jobs."""

    def start(self) -> None:
        return None

    def stop(self, timeout: float = 5.0) -> None:
        return None

    def notify(self) -> None:
        return None


class RemoteExecutor:
    """`serve` under the procrastinate executor: jobs run in `pgvault worker` processes.

    Nothing to start: the deferral hook is installed on the context, and PostgreSQL's
    NOTIFY (sent at commit) wakes the workers, so `notify()` has nothing to do.
    """

    def __init__(self, ctx: Context) -> None:
        install_deferral(ctx)

    def start(self) -> None:
        return None

    def stop(self, timeout: float = 5.0) -> None:
        return None

    def notify(self) -> None:
        return None


def uses_procrastinate(settings: Settings) -> bool:
    """The procrastinate executor is chosen; refused on SQLite metadata (it needs PostgreSQL)."""
    if settings.executor != "procrastinate":
        return False
    if not settings.metadata_url.startswith(("postgresql", "postgres:")):
        raise ValueError(
            "PGVAULT_EXECUTOR=procrastinate needs PostgreSQL metadata: set "
            "PGVAULT_DATABASE_URL=postgresql://... (or use the embedded executor)."
        )
    return True


def _slot(key: str, width: int) -> int:
    """A stable slot in [0, width) for `key` (crc32: the same in every process)."""
    return zlib.crc32(key.encode()) % max(1, width)


def lock_for(s: Session, job: jobs.Job, settings: Settings) -> str | None:
    """The Procrastinate lock of a job: jobs sharing a lock never run at once.

    A backup locks one of N slots of its source server, a database restore one of N slots
    of its target server (N = the configured per-server concurrency); the slot is chosen by
    the instance, so two jobs of one instance share a lock and never overlap. Other jobs
    lock their instance. N slots cap a server at N jobs with no polling; the price is that
    two instances hashed to one slot wait for each other while another slot may be free.
    """
    instance = job.instance_id or job.id
    if job.operation == jobs.BACKUP and job.instance_id:
        inst = s.get(instances.Instance, job.instance_id)
        if inst is not None:
            n = settings.source_server_concurrency
            return f"source:{inst.server_id}:{_slot(instance, n)}"
    if job.operation == jobs.RESTORE:
        target = (job.params or {}).get("target") or {}
        server = str(target.get("server_id") or "").lower()
        if server:
            n = settings.target_server_concurrency
            return f"target:{server}:{_slot(instance, n)}"
    return f"instance:{instance}"


def defer(app: Any, connection: Any, s: Session, job: jobs.Job, settings: Settings) -> None:
    """Defer `job` as a Procrastinate job on `connection` (the caller's transaction)."""
    app.configure_task(
        TASK,
        connection=connection,
        lock=lock_for(s, job, settings),
        priority=job.priority or 0,
        queue=QUEUE,
    ).defer(job_id=job.id)


def install_deferral(ctx: Context) -> None:
    """Defer every queued Job row when the metadata transaction that created it commits.

    Rows are collected after each flush; at commit those still waiting for a worker are
    deferred on the session's own psycopg connection. Housekeeping jobs, recorded finished
    in the transaction that creates them, are never deferred. A rolled-back transaction
    defers nothing: the Procrastinate rows were never written.
    """
    from pgvault import procapp  # the Procrastinate app (no worker started here)

    if ctx.db.sessions in _HOOKED:
        return  # once per metadata database: a second hook would defer every job twice
    _HOOKED.add(ctx.db.sessions)
    app = procapp.app(ctx.settings)
    settings = ctx.settings

    def collect(session: Session, _flush_context: Any) -> None:
        new = [o for o in session.new if isinstance(o, jobs.Job)]
        if new:
            session.info.setdefault(_NEW_JOBS, []).extend(new)

    def before_commit(session: Session) -> None:
        session.flush()  # rows added since the last flush are collected too
        pending: list[jobs.Job] = session.info.pop(_NEW_JOBS, [])
        waiting = [j for j in pending if j.status == jobs.IN_PROGRESS and j.worker_id is None]
        if not waiting:
            return
        connection = session.connection().connection.driver_connection
        for job in waiting:
            defer(app, connection, session, job, settings)
            log.debug("deferred job %s to procrastinate", job.id)

    def forget(session: Session, *_args: Any) -> None:
        session.info.pop(_NEW_JOBS, None)

    event.listen(ctx.db.sessions, "after_flush", collect)
    event.listen(ctx.db.sessions, "before_commit", before_commit)
    event.listen(ctx.db.sessions, "after_soft_rollback", forget)
