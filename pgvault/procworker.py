"""`pgvault worker`: a process that runs pgvault jobs from Procrastinate's queue.

Any number of them, on any machine that reaches the metadata database and the
datastores. Each fetches jobs through Procrastinate (LISTEN/NOTIFY wake-up; locks
and priorities applied at fetch time, see `executors.lock_for`), claims the pgvault
`Job` row with a conditional UPDATE, and runs the job kind in one of its
`worker_concurrency` threads.

A worker killed mid-job is found two ways, both in every worker's sweep thread:
pgvault's own heartbeat on the `Job` row (`workers.sweep_abandoned`: the kind's
`abandoned()` cleans up, the job fails `WorkerLost`, a scheduled backup gets a new
attempt), and Procrastinate's worker heartbeat (its queue entry, still `doing`, is
closed so the lock it holds is released, or re-queued if the job never started).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator

from sqlalchemy import Connection, text

from pgvault import executors, jobs, procapp, workers
from pgvault.context import Context

log = logging.getLogger("pgvault.procworker")

#: Advisory-lock class id of the global concurrency slots (pg_try_advisory_lock(int, int)).
GLOBAL_SLOTS = 0x70677661  # "pgva"


#: The key of the turnstile lock jobs queue on, in order, before they look for a slot.
TURNSTILE = -1
#: How often a job waiting for a global slot tries again.
SLOT_POLL_SECONDS = 0.5
#: How often an idle worker looks for a job whose lock was freed (a new job wakes it at once
#: through NOTIFY; a freed lock sends none).
FETCH_POLL_SECONDS = 1.0


#: Queue entries still `doing` whose Procrastinate worker stopped heartbeating (or was
#: pruned), with the pgvault job they carry. Procrastinate's own stalled-job query.
_STALLED = text(
    """
    SELECT pj.id, pj.args->>'job_id' AS job_id, j.status, j.worker_id
      FROM procrastinate_jobs pj
      LEFT JOIN procrastinate_workers w ON w.id = pj.worker_id
      LEFT JOIN jobs j ON j.id = pj.args->>'job_id'
     WHERE pj.status = 'doing' AND pj.task_name = :task
       AND (pj.worker_id IS NULL
            OR w.last_heartbeat < now() - make_interval(secs => :stale))
    """
)


class ProcrastinateWorker:
    """One `pgvault worker` process: Procrastinate's worker loop plus a heartbeat/sweep thread."""

    def __init__(self, ctx: Context, concurrency: int | None = None) -> None:
        self.ctx = ctx
        self.concurrency = max(1, concurrency or ctx.settings.worker_concurrency)
        #: host:pid:... like the embedded pool's ids, so a sweep on this host sees a dead pid.
        self.ident = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}:p"
        self.app = procapp.app(ctx.settings)
        executors.install_deferral(ctx)  # a retry the sweep queues is deferred too
        self.app.task(name=executors.TASK, queue=executors.QUEUE)(self.run_job)
        self._stop = threading.Event()

    def run_job(self, job_id: str) -> None:
        """The Procrastinate task: claim the pgvault job, run it to a terminal status."""
        with self._global_slot():
            with self.ctx.db.session() as s:
                job = jobs.claim(s, job_id, self.ident, self.ctx.clock.now())
                operation = job.operation if job else None
            if operation is None:
                log.info("job %s is already taken or over; nothing to run", job_id)
                return
            workers.run_claimed(self.ctx, job_id, operation, self.ident)

    @contextlib.contextmanager
    def _global_slot(self) -> Iterator[None]:
        """Hold one of the `global_concurrency` slots while the job runs (none if 0).

        A session-level advisory lock on a connection held for the job: a worker that dies
        loses its connection, and PostgreSQL frees the slot with it. A job finding every
        slot taken waits here, keeping its place (and its Procrastinate lock), rather than
        going back to the queue: a re-queued job would hold up every later job of its lock.
        """
        limit = self.ctx.settings.global_concurrency
        if limit <= 0:
            yield
            return
        conn = self.ctx.db.engine.connect()
        try:
            slot = _wait_for_slot(conn, limit)
            try:
                yield
            finally:
                conn.execute(
                    text("SELECT pg_advisory_unlock(:c, :k)"), {"c": GLOBAL_SLOTS, "k": slot}
                )
                conn.commit()
        finally:
            conn.close()

    def run(self) -> None:
        """Run until SIGINT/SIGTERM (Procrastinate stops cleanly, letting running jobs end)."""
        workers.sweep_abandoned(self.ctx)
        sweeper = threading.Thread(target=self._heartbeat, name="pgvault-heartbeat", daemon=True)
        sweeper.start()
        st = self.ctx.settings
        try:
            self.app.run_worker(
                queues=[executors.QUEUE],
                name=self.ident,
                concurrency=self.concurrency,
                update_heartbeat_interval=st.heartbeat_seconds,
                stalled_worker_timeout=st.stale_after_seconds,
                delete_jobs="successful",
                fetch_job_polling_interval=FETCH_POLL_SECONDS,
            )
        finally:
            self._stop.set()
            sweeper.join(5)

    def _heartbeat(self) -> None:
        interval = self.ctx.settings.heartbeat_seconds
        while not self._stop.wait(interval):
            try:
                with self.ctx.db.session() as s:
                    jobs.heartbeat(s, self.ident, self.ctx.clock.now())
                workers.sweep_abandoned(self.ctx)
                release_stalled(self.ctx)
            except Exception:
                log.exception("heartbeat or sweep failed")


def _wait_for_slot(conn: Connection, limit: int) -> int:
    """A free slot, taken in the order jobs asked for one, whichever worker holds them.

    Waiters first queue on one more advisory lock, the turnstile: PostgreSQL grants it in
    request order, and only its holder polls for a free slot. Without it, the worker that
    just freed a slot took it again at once with its next job, while jobs that had waited
    longer in another worker kept polling: the third of three workers could run nothing."""
    turnstile = {"c": GLOBAL_SLOTS, "k": TURNSTILE}
    conn.execute(text("SELECT pg_advisory_lock(:c, :k)"), turnstile)
    conn.commit()
    try:
        slot = _take_slot(conn, limit)
        while slot is None:
            time.sleep(SLOT_POLL_SECONDS)
            slot = _take_slot(conn, limit)
        return slot
    finally:
        conn.execute(text("SELECT pg_advisory_unlock(:c, :k)"), turnstile)
        conn.commit()


def _take_slot(conn: Connection, limit: int) -> int | None:
    for k in range(limit):
        got = conn.execute(
            text("SELECT pg_try_advisory_lock(:c, :k)"), {"c": GLOBAL_SLOTS, "k": k}
        ).scalar()
        conn.commit()
        if got:
            return k
    return None


def release_stalled(ctx: Context) -> int:
    """Close the queue entries of lost Procrastinate workers; returns how many.

    A pgvault job still queued (never claimed) is re-queued: nothing ran. One already
    over (failed by the pgvault sweep, its new attempt queued) is marked failed, which
    frees its lock for that attempt. One claimed and still running waits for the pgvault
    sweep to fail it first (its `abandoned()` must clean before anything else runs).
    """
    released = 0
    with ctx.db.session() as s:
        rows = s.execute(
            _STALLED, {"task": executors.TASK, "stale": ctx.settings.stale_after_seconds}
        ).all()
        for queue_id, _job_id, status, worker_id in rows:
            if status == jobs.IN_PROGRESS and worker_id is None:
                s.execute(
                    text("SELECT procrastinate_retry_job_v2(:id, now(), NULL, NULL, NULL)"),
                    {"id": queue_id},
                )
            elif status != jobs.IN_PROGRESS:
                s.execute(
                    text("SELECT procrastinate_finish_job_v1(:id, 'failed', false)"),
                    {"id": queue_id},
                )
            else:
                continue
            released += 1
    if released:
        log.warning("released %d queue entries of lost workers", released)
    return released
