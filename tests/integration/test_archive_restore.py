"""Restoring a point that the sweep moved to ArchiveStore: refusals, rehydration, its window.

The point gets to the archive the way production does: a FrozenClock moves past its
VaultStore retention and `housekeeping.sweep` copies it (verified) and drops the vault
copy. Restores are real pg_restore runs into a second cluster, compared row for row.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from pgvault import jobs, retention
from pgvault.errors import PgVaultError
from pgvault.jobkinds import rehydrate as rehydration
from pgvault.jobkinds.restore import DatabaseTarget, RestoreRequest
from tests.integration.clocked import (
    ClockedVault,
    assert_consistent,
    clocked_vault,
    expected_objects,
)
from tests.integration.conftest import RG
from tests.support.pg import PgCluster
from tests.support.sampledb import assert_same_data, build_rich_database, snapshot

# One week in VaultStore, then (on expiry) ArchiveStore until six months old.
POLICY = retention.build_policy(keep_default="P1W", archive_after="on-expiry", archive_keep="P6M")


def _request(
    cv: ClockedVault,
    point: str,
    store: str,
    secret: str,
    priority: str | None = None,
    duration: str | None = None,
) -> RestoreRequest:
    server_id = cv.service.get_server(cv.sub, RG, "tgt").arm_id
    target = DatabaseTarget(server_id, f"restored_{uuid.uuid4().hex[:8]}", secret)
    return RestoreRequest(point, store, target, priority, duration)


def _refused(cv: ClockedVault, instance: str, req: RestoreRequest) -> str:
    """The error code of a refused restore (validation and trigger must agree)."""
    error = cv.helper.validate(instance, req)
    assert error is not None, "validation accepted the request"
    with pytest.raises(PgVaultError) as raised:
        cv.service.trigger_restore(cv.sub, RG, cv.name, instance, req)
    assert raised.value.code == error.code
    return error.code


def _rehydrate_refused(
    cv: ClockedVault, instance: str, point: str, priority: str | None, duration: str | None
) -> str:
    with pytest.raises(PgVaultError) as raised:
        cv.service.rehydrate(cv.sub, RG, cv.name, instance, point, priority, duration)
    return raised.value.code


def _phases(job: jobs.Job) -> list[str]:
    return [p["name"] for p in job.phases]


def test_restore_from_archive_rehydrates_once_per_window(
    tmp_path: Path, pg_source: PgCluster, pg_target: PgCluster
) -> None:
    with clocked_vault(tmp_path, POLICY) as (cv, datastore, archive):
        db = f"arch_{uuid.uuid4().hex[:8]}"
        build_rich_database(pg_source, db)
        source = snapshot(pg_source.admin_dsn(db))
        instance = cv.protect(pg_source, db)
        point_id = cv.backup(instance).recovery_point_id
        assert point_id is not None
        cv.helper.register(pg_target, "tgt")
        secret = cv.helper.secret(
            "restorer",
            f"Server=127.0.0.1;Port={pg_target.port};User Id=restorer;Password=restorer-pw;",
        )

        # -- eight days on, the sweep moves the point to the archive tier ----------------------
        cv.advance(timedelta(days=8))
        done = cv.sweep()
        assert (done["tiered"], done["vaultCopiesExpired"]) == (1, 1), done
        point = cv.point(point_id)
        assert point.datastores == ["ArchiveStore"]
        assert cv.vault_tier(point).list() == []
        assert sorted(cv.archive_tier(point).list()) == expected_objects(point)
        assert_consistent(cv, datastore, archive)

        # -- refusals ------------------------------------------------------------------------
        vault_req = _request(cv, point_id, "VaultStore", secret)
        assert _refused(cv, instance, vault_req) == "UserErrorRecoveryPointInArchive"
        for duration in ("P9D", "P31D"):
            req = _request(cv, point_id, "ArchiveStore", secret, "Standard", duration)
            assert _refused(cv, instance, req) == "UserErrorInvalidRehydrationDuration"
            code = _rehydrate_refused(cv, instance, point_id, "Standard", duration)
            assert code == "UserErrorInvalidRehydrationDuration"
        req = _request(cv, point_id, "ArchiveStore", secret, "Urgent", "P10D")
        assert _refused(cv, instance, req) == "UserErrorInvalidRehydrationPriority"
        code = _rehydrate_refused(cv, instance, point_id, "Urgent", "P10D")
        assert code == "UserErrorInvalidRehydrationPriority"
        assert cv.jobs(jobs.RESTORE) == []
        assert cv.jobs("Rehydrate") == []

        # -- restore from the archive: rehydrates first, then restores -------------------------
        req = _request(cv, point_id, "ArchiveStore", secret, "Standard", "P10D")
        job = cv.helper.restore(instance, req)
        assert job.status == jobs.COMPLETED, (job.error_code, job.error_message)
        assert "Rehydrating" in _phases(job)
        assert _phases(job).index("Rehydrating") < _phases(job).index("Transferring data")
        assert isinstance(req.target, DatabaseTarget)
        assert_same_data(source, snapshot(pg_target.admin_dsn(req.target.database)))
        point = cv.point(point_id)
        assert point.rehydrated_until == cv.now() + timedelta(days=10)
        assert sorted(cv.vault_tier(point).list()) == expected_objects(point)
        assert (point.in_vault, point.in_archive) == (False, True)
        assert_consistent(cv, datastore, archive)

        # -- two days later, inside the window: no second rehydration ---------------------------
        cv.advance(timedelta(days=2))
        req = _request(cv, point_id, "ArchiveStore", secret, "High", "P10D")
        job = cv.helper.restore(instance, req)
        assert job.status == jobs.COMPLETED, (job.error_code, job.error_message)
        assert "Rehydrating" not in _phases(job)
        assert job.priority == rehydration.HIGH_PRIORITY
        assert isinstance(req.target, DatabaseTarget)
        assert_same_data(source, snapshot(pg_target.admin_dsn(req.target.database)))
        assert cv.helper.validate(instance, _request(cv, point_id, "VaultStore", secret)) is None

        # -- the window ends: the sweep removes the rehydrated copy ---------------------------
        cv.advance(timedelta(days=8, hours=1))
        done = cv.sweep()
        assert done["rehydrationsEnded"] == 1, done
        point = cv.point(point_id)
        assert point.rehydrated_until is None
        assert cv.vault_tier(point).list() == []
        assert [p.id for p in cv.points(instance)] == [point_id]
        assert point.datastores == ["ArchiveStore"]
        assert sorted(cv.archive_tier(point).list()) == expected_objects(point)
        assert _refused(cv, instance, vault_req) == "UserErrorRecoveryPointInArchive"
        assert_consistent(cv, datastore, archive)
        assert cv.sweep()["rehydrationsEnded"] == 0

        # -- a standalone rehydration job ------------------------------------------------------
        job = cv.service.rehydrate(cv.sub, RG, cv.name, instance, point_id, "Standard", "P12D")
        job = cv.helper.wait(job.id)
        assert job.status == jobs.COMPLETED, (job.error_code, job.error_message)
        assert _phases(job) == ["Rehydrating"]
        until = cv.now() + timedelta(days=12)
        assert job.result["rehydratedUntil"] == until.isoformat()
        point = cv.point(point_id)
        assert point.rehydrated_until == until
        assert sorted(cv.vault_tier(point).list()) == expected_objects(point)
        assert cv.helper.validate(instance, _request(cv, point_id, "VaultStore", secret)) is None
        assert_consistent(cv, datastore, archive)


def test_high_priority_rehydration_is_claimed_first(tmp_path: Path, pg_source: PgCluster) -> None:
    with clocked_vault(tmp_path, POLICY) as (cv, datastore, archive):
        db = f"prio_{uuid.uuid4().hex[:8]}"
        build_rich_database(pg_source, db)
        instance = cv.protect(pg_source, db)
        point_id = cv.backup(instance).recovery_point_id
        assert point_id is not None
        cv.advance(timedelta(days=8))
        assert cv.sweep()["tiered"] == 1

        cv.stop_workers()  # nothing claims jobs until the test does
        svc = cv.service
        standard = svc.rehydrate(cv.sub, RG, cv.name, instance, point_id, "Standard", None)
        cv.advance(timedelta(minutes=5))
        high = svc.rehydrate(cv.sub, RG, cv.name, instance, point_id, "high", "P20D")
        assert standard.created_at < high.created_at
        assert (standard.priority, high.priority) == (0, rehydration.HIGH_PRIORITY)
        assert high.params == {
            "rehydrationPriority": "High",
            "rehydrationRetentionDuration": "P20D",
        }
        assert standard.params["rehydrationRetentionDuration"] == rehydration.DEFAULT_DURATION

        claimed = []
        with cv.ctx.db.session() as s:
            while (job := jobs.claim_next(s, "test:0:probe", cv.now())) is not None:
                claimed.append(job.id)
        assert claimed == [high.id, standard.id]

        # Run both the way a worker would, in the order they were claimed.
        for job_id in claimed:
            rehydration.run(cv.ctx, job_id)
        views = {j.id: j for j in cv.jobs("Rehydrate")}
        assert {views[i].status for i in claimed} == {jobs.COMPLETED}
        point = cv.point(point_id)
        assert point.rehydrated_until == cv.now() + timedelta(days=20)  # the longer one wins
        assert_consistent(cv, datastore, archive)
