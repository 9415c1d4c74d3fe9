"""Tiering: copy a recovery point to the archive tier (verified), recorded as a Tiering job.

The housekeeping sweep picks the points that are due and calls `tier` for each. The
Tiering job is written when the copy ends (Completed or Failed, with the point's new
tier in the same transaction), so it is never seen InProgress and no worker claims
it. A sweep killed mid-copy leaves the point as it was; the next sweep copies it
again after discarding the partial upload.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar

from pgvault import jobs
from pgvault.context import Context
from pgvault.engine.load import load_manifest
from pgvault.engine.manifest import MANIFEST, Manifest
from pgvault.errors import Code, CorruptRecoveryPoint, PgVaultError
from pgvault.jobkinds.base import RecordedKind, housekeeping_job
from pgvault.recovery_points import COMMITTED, RecoveryPoint
from pgvault.storage.backends import Location, pumped

log = logging.getLogger("pgvault.housekeeping")

OPERATION = "Tiering"
_DETAILS = {"from": "VaultStore", "to": "ArchiveStore"}


def copy_verified(source: Location, target: Location, manifest: Manifest) -> None:
    """Copy a point's objects between stores, checking each against the manifest's sha256."""
    for obj in manifest.objects:
        digest = hashlib.sha256()

        def chunks(name: str = obj.name, d: Any = digest) -> Iterator[bytes]:
            for chunk in source.get_stream(name):
                d.update(chunk)
                yield chunk

        target.put_stream(obj.name, pumped(chunks))
        if digest.hexdigest() != obj.sha256:
            target.delete(obj.name)
            raise CorruptRecoveryPoint(
                f"Object {obj.name!r} changed while being copied between tiers; kept the source."
            )
    target.put_bytes(MANIFEST, source.get_bytes(MANIFEST))


def _discard_partial_uploads(target: Location) -> None:
    """Remove staged uploads a killed copy left at `target` (the local backend names them
    `name#N` and never lists them). Complete objects are kept: a concurrent copy may own them."""
    root = target.local_root
    if root is None or not target.prefix:
        return
    for staged in (root / target.prefix).glob("*#*"):
        staged.unlink(missing_ok=True)


def tier(ctx: Context, point_id: str, now: datetime) -> bool:
    """Copy one due point to the archive tier and record the Tiering job. True if it moved."""
    with ctx.db.session() as s:
        point = s.get(RecoveryPoint, point_id)
        if point is None or point.state != COMMITTED or point.in_archive or not point.in_vault:
            return False  # gone, or another sweep archived it meanwhile
        location = point.location
    source, target = ctx.datastore.child(location), ctx.archive.child(location)
    try:
        _discard_partial_uploads(target)
        copy_verified(source, target, load_manifest(source))
    except Exception as exc:
        _record_failed(ctx, point_id, now, exc)
        return False
    with ctx.db.session() as s:
        point = s.get(RecoveryPoint, point_id)
        if point is None or point.state != COMMITTED:
            gone = True
        else:
            gone = False
            point.in_archive, point.archive_location = True, location
            job = housekeeping_job(s, point, OPERATION, now, _DETAILS)
            jobs.finish(job, ctx.clock.now())
    if gone:
        target.delete_all()  # deleted while we copied: the copy belongs to no one
    return not gone


def _record_failed(ctx: Context, point_id: str, now: datetime, exc: Exception) -> None:
    log.warning("tiering point %s failed: %s", point_id, exc)
    error = (
        exc
        if isinstance(exc, PgVaultError)
        else PgVaultError(
            f"Unexpected {type(exc).__name__} while copying to the archive tier; "
            "it is retried on the next pass.",
            code=Code.InternalError,
        )
    )
    with ctx.db.session() as s:
        point = s.get(RecoveryPoint, point_id)
        if point is not None:
            job = housekeeping_job(s, point, OPERATION, now, _DETAILS)
            jobs.finish(job, ctx.clock.now(), error=error)


class Tiering(RecordedKind):
    operation: ClassVar[str] = OPERATION
