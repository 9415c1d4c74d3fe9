"""The in-process worker pool: threads that claim queued jobs from the metadata database.

Claiming is a conditional UPDATE, so several `pgvault serve` processes (or
machines) sharing one PostgreSQL metadata database never run a job twice. Each
worker heartbeats its running jobs; a sweep fails jobs whose worker is gone and
removes what they left half-written.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pgvault import alerts, instances, jobs, logs
from pgvault.context import Context
from pgvault.errors import Code, PgVaultError
from pgvault.jobkinds import kind_for

log = logging.getLogger("pgvault.workers")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_local_workers(worker_ids: set[str]) -> set[str]:
    """Workers on this host whose process no longer exists (or is this one's predecessor)."""
    host = socket.gethostname()
    dead = set()
    for wid in worker_ids:
        parts = wid.split(":")
        if len(parts) >= 3 and parts[0] == host and parts[1].isdigit():
            pid = int(parts[1])
            if pid != os.getpid() and not _pid_alive(pid):
                dead.add(wid)
    return dead


def sweep_abandoned(ctx: Context) -> int:
    """Fail running jobs whose worker died; clean what they left. Returns how many.

    The stale jobs are read in one short transaction; each kind then cleans up with no
    metadata session open (it may contact a server or a store), and only then is the job
    failed, so a sweep that dies in between cleans again on the next pass.
    """
    now = ctx.clock.now()
    with ctx.db.session() as s:
        running = {
            j.worker_id
            for j in s.query(jobs.Job).filter(jobs.Job.status == jobs.IN_PROGRESS)
            if j.worker_id
        }
        stale = jobs.stale(
            s,
            now,
            timedelta(seconds=ctx.settings.stale_after_seconds),
            dead_local_workers(running),
        )
    for job in stale:
        try:
            kind_for(job.operation).abandoned(ctx, job)
        except Exception:
            log.exception("cleaning up after job %s failed", job.id)
        if _fail_abandoned(ctx, job, now):
            alerts.job_finished(ctx, job.id)  # committed: the vault hears of it once
    return len(stale)


def _fail_abandoned(ctx: Context, abandoned: jobs.Job, now: datetime) -> bool:
    """Fail the job unless another sweep did; True if this call failed it."""
    with ctx.db.session() as s:
        job = s.get(jobs.Job, abandoned.id)
        if job is None or job.status != jobs.IN_PROGRESS:
            return False  # another sweep failed it meanwhile
        seen = job.heartbeat_at.isoformat() if job.heartbeat_at else "never"
        error = PgVaultError(
            f"The worker running this job stopped (last heartbeat {seen}). Nothing partial "
            "was kept; run the operation again.",
            code=Code.WorkerLost,
            recommended_action="Run the operation again.",
            retryable=True,
        )
        jobs.finish(job, now, error=error)
        log.warning("job %s failed: worker %s lost", job.id, job.worker_id)
        attempt = int((job.params or {}).get("attempt") or 1)
        if attempt <= ctx.settings.lost_job_retries:
            again = kind_for(job.operation).retry(s, job, now)
            if again is not None:
                log.info("job %s: attempt %d is job %s", job.id, attempt + 1, again.id)
    return True


def held_back(s: Session, per_server: int) -> list[str]:
    """Instances whose backups must wait: their source server runs `per_server` already.

    The embedded pool's cheap version of the per-server limit (best effort across
    processes; the procrastinate executor enforces it exactly with its locks).
    """
    busy = (
        select(instances.Instance.server_id)
        .join(jobs.Job, jobs.Job.instance_id == instances.Instance.id)
        .where(
            jobs.Job.operation == jobs.BACKUP,
            jobs.Job.status == jobs.IN_PROGRESS,
            jobs.Job.worker_id.is_not(None),
        )
        .group_by(instances.Instance.server_id)
        .having(func.count() >= per_server)
    )
    return list(
        s.scalars(select(instances.Instance.id).where(instances.Instance.server_id.in_(busy)))
    )


def run_claimed(ctx: Context, job_id: str, operation: str, worker_id: str) -> None:
    """Run a job this worker claimed, whatever the executor; it always ends terminal."""
    token = logs.job_id.set(job_id)  # every record logged during the job names it
    try:
        log.info("worker %s runs %s job %s", worker_id, operation, job_id)
        kind_for(operation).run(ctx, job_id)
    except Exception:
        log.exception("job %s crashed", job_id)
    except BaseException as exc:  # e.g. a Rust panic surfacing from a binding
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        log.exception("job %s crashed", job_id)
    finally:
        logs.job_id.reset(token)
    _ensure_finished(ctx, job_id)
    alerts.job_finished(ctx, job_id)  # after the job's last transaction, whatever the executor


def _ensure_finished(ctx: Context, job_id: str) -> None:
    """A handler must end its job; if one did not, fail it rather than leave it running."""
    with ctx.db.session() as s:
        job = jobs.get(s, job_id)
        if job.status == jobs.IN_PROGRESS:
            error = PgVaultError("The job ended without a result; see the service log.")
            jobs.finish(job, ctx.clock.now(), error=error)


class WorkerPool:
    """N worker threads plus one heartbeat/sweep thread, woken early by `notify()`."""

    def __init__(self, ctx: Context, size: int) -> None:
        self.ctx = ctx
        self.size = max(1, size)
        self.ident = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._claiming = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def worker_id(self, n: int) -> str:
        return f"{self.ident}:{n}"

    def start(self) -> None:
        sweep_abandoned(self.ctx)
        for n in range(self.size):
            t = threading.Thread(
                target=self._loop, args=(n,), name=f"pgvault-worker-{n}", daemon=True
            )
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._heartbeat, name="pgvault-heartbeat", daemon=True)
        t.start()
        self._threads.append(t)

    def notify(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)

    def _loop(self, n: int) -> None:
        wid = self.worker_id(n)
        while not self._stop.is_set():
            try:
                # One claim at a time in this process, so the limit's count is exact here.
                with self._claiming, self.ctx.db.session() as s:
                    held = held_back(s, self.ctx.settings.source_server_concurrency)
                    job = jobs.claim_next(s, wid, self.ctx.clock.now(), held)
                    claimed = (job.id, job.operation) if job else None
            except Exception:
                log.exception("claiming a job failed")
                claimed = None
            if claimed is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            job_id, operation = claimed
            run_claimed(self.ctx, job_id, operation, wid)

    def _heartbeat(self) -> None:
        interval = self.ctx.settings.heartbeat_seconds
        while not self._stop.wait(interval):
            try:
                with self.ctx.db.session() as s:
                    for n in range(self.size):
                        jobs.heartbeat(s, self.worker_id(n), self.ctx.clock.now())
                sweep_abandoned(self.ctx)
            except Exception:
                log.exception("heartbeat failed")
