"""Throttled progress: engines report every chunk; the job row is written at most twice a second.

Each write also reads the job's cancel flag: a cancelled job's worker raises
`JobCancelled` from inside the engine's loop, so the kind's ordinary failure path
(subprocesses ended, partial objects removed, a created database dropped) runs.
"""

from __future__ import annotations

import time

from sqlalchemy import update

from pgvault import jobs
from pgvault.context import Context
from pgvault.errors import Code, JobCancelled, PgVaultError
from pgvault.jobs import Job


class JobProgress:
    """Writes `bytes_done` (and phase changes) of one job to the metadata DB, throttled."""

    def __init__(self, ctx: Context, job_id: str, interval: float = 0.5) -> None:
        self.ctx, self.job_id, self.interval = ctx, job_id, interval
        self._last = 0.0
        self._offset = 0

    def phase(self, name: str, total: int | None = None) -> None:
        """Open a new phase; byte counters restart from zero for it. A job whose cancel was
        asked for stops here (JobCancelled) instead."""
        with self.ctx.db.session() as s:
            jobs.enter_phase(s, self.job_id, name, self.ctx.clock.now())
            if total is not None:
                s.execute(update(Job).where(Job.id == self.job_id).values(bytes_total=total))
        self._last = 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        self.write(done)

    def write(self, done: int, total: int | None = None) -> None:
        values: dict[str, object] = {"bytes_done": done, "heartbeat_at": self.ctx.clock.now()}
        if total is not None:
            values["bytes_total"] = total
        with self.ctx.db.session() as s:
            s.execute(update(Job).where(Job.id == self.job_id).values(**values))
            cancel = jobs.cancel_asked(s, self.job_id)
        if cancel:
            raise JobCancelled()


def fail(ctx: Context, job_id: str, exc: BaseException) -> None:
    """End a job Failed with a stable code; unexpected errors keep their type, not their text."""
    error = (
        exc
        if isinstance(exc, PgVaultError)
        else PgVaultError(
            f"Unexpected {type(exc).__name__} in the worker; see the service log.",
            code=Code.InternalError,
        )
    )
    status = jobs.CANCELLED if isinstance(exc, JobCancelled) else None
    with ctx.db.session() as s:
        jobs.finish(jobs.get(s, job_id), ctx.clock.now(), error=error, status=status)
