"""Deletion: a recovery point whose retention ended, recorded as a Deletion job.

The housekeeping sweep marks the point Deleting and calls `record` in the same
transaction; the job is written finished there, so it is never seen InProgress and no
worker claims it. The sweep then removes the point's objects and row
(`housekeeping.finish_deletions`), resumably.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from sqlalchemy.orm import Session

from pgvault import jobs
from pgvault.jobkinds.base import RecordedKind, housekeeping_job
from pgvault.recovery_points import RecoveryPoint

OPERATION = "Deletion"


def record(s: Session, point: RecoveryPoint, now: datetime, reason: str) -> jobs.Job:
    """Write the finished Deletion job of a point just marked Deleting (caller's transaction)."""
    job = housekeeping_job(s, point, OPERATION, now, {"reason": reason})
    jobs.finish(job, now)
    return job


class Deletion(RecordedKind):
    operation: ClassVar[str] = OPERATION
