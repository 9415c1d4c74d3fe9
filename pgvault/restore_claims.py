"""Exclusive claims on a restore's file prefix: "restores never overwrite", also when raced.

A restore as files claims (container, prefix) when it is queued: the claim is a row whose
primary key is that pair, so of several requests for one prefix only one can hold it, and
the others are refused with UserErrorFileAlreadyExists. The job releases its claim when it
ends (its files then exist, or it removed what it wrote); a claim whose job is no longer in
progress (a crashed process) is taken over by the next request.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from pgvault import jobs
from pgvault.errors import Code, UserError
from pgvault.orm import Base, UTCDateTime


class RestoreClaim(Base):
    __tablename__ = "restore_claims"

    container_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    prefix: Mapped[str] = mapped_column(String(600), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(36))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime())


def taken(container_name: str, prefix: str) -> UserError:
    return UserError(
        f"Another restore is writing {prefix!r} in container {container_name!r}.",
        code=Code.UserErrorFileAlreadyExists,
        recommended_action="Choose another file prefix (restores never overwrite).",
    )


def _live(s: Session, job_id: str) -> bool:
    job = s.get(jobs.Job, job_id)
    return job is not None and job.status == jobs.IN_PROGRESS


def claim(
    s: Session, container_key: str, container_name: str, prefix: str, job_id: str, now: datetime
) -> None:
    """Claim (container, prefix) for `job_id`, or raise UserErrorFileAlreadyExists.

    Flushes, so a concurrent claim of the same pair fails here (unique key) rather than
    at commit; the caller's transaction then rolls back with its job.
    """
    held = s.scalar(
        select(RestoreClaim).where(
            RestoreClaim.container_key == container_key, RestoreClaim.prefix == prefix
        )
    )
    if held is not None:
        if _live(s, held.job_id):
            raise taken(container_name, prefix)
        stale = s.execute(
            update(RestoreClaim)
            .where(
                RestoreClaim.container_key == container_key,
                RestoreClaim.prefix == prefix,
                RestoreClaim.job_id == held.job_id,
            )
            .values(job_id=job_id, claimed_at=now)
        )
        if stale.rowcount != 1:  # type: ignore[attr-defined]
            raise taken(container_name, prefix)
        return
    s.add(RestoreClaim(container_key=container_key, prefix=prefix, job_id=job_id, claimed_at=now))
    try:
        s.flush()
    except IntegrityError:
        raise taken(container_name, prefix) from None


def release(s: Session, job_id: str) -> None:
    """Drop the claims a job holds (when it ends, whatever its outcome)."""
    s.execute(delete(RestoreClaim).where(RestoreClaim.job_id == job_id))


def holder(s: Session, container_key: str, prefix: str) -> str | None:
    """The job holding (container, prefix), if any."""
    return s.scalar(
        select(RestoreClaim.job_id).where(
            RestoreClaim.container_key == container_key, RestoreClaim.prefix == prefix
        )
    )
