"""A housekeeping sweep killed (SIGKILL) in the middle of a tier move and of a retention
deletion, then run again: it must converge without losing or half-listing anything.

The sweep runs in a child process (`python -c`) on the same PGVAULT_HOME, PostgreSQL
metadata database and datastore directories as the test, with a FrozenClock at the
test's simulated time. The point being moved is ~80 MB of incompressible data, so the
verified copy to ArchiveStore takes long enough to be caught half-written. For the
deletion, the child is held between deleting a point's objects and deleting its row
by a row lock the test takes (FOR KEY SHARE lets the row be marked Deleting but not
deleted), and killed while it waits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from pgvault import jobs, recovery_points, retention
from pgvault.config import Settings
from pgvault.engine.manifest import MANIFEST
from tests.integration.clocked import (
    START,
    ClockedVault,
    assert_consistent,
    clocked_vault,
    expected_objects,
    files_under,
    fresh_pg_database,
    tiny_database,
)
from tests.support.pg import PgCluster

# Five weeks in VaultStore, then (on expiry) ArchiveStore until six months old.
POLICY = retention.build_policy(keep_default="P5W", archive_after="on-expiry", archive_keep="P6M")
BIG_BYTES = 80_000_000

SWEEP = """
import sys
from datetime import datetime
from pathlib import Path

import pgvault.scheduler  # what `pgvault serve` loads: every model the sweep touches
from pgvault import housekeeping
from pgvault.clock import FrozenClock
from pgvault.config import Settings
from pgvault.context import Context

home, url, datastore, archive, now = sys.argv[1:6]
settings = Settings(home=Path(home), database_url=url, datastore_url=datastore, archive_url=archive)
ctx = Context.create(settings, clock=FrozenClock(datetime.fromisoformat(now)))
print("SWEPT", housekeeping.sweep(ctx), flush=True)
"""


@pytest.fixture
def big_database(pg_source: PgCluster) -> Iterator[str]:
    """~80 MB of random base64 text: quick to build, and it stays big after zstd."""
    name = f"big_{uuid.uuid4().hex[:8]}"
    pg_source.create_database(name)
    pg_source.execute(
        "CREATE TABLE blob (body text);"
        f" COPY blob FROM PROGRAM 'head -c {BIG_BYTES} /dev/urandom | base64 -w 8192'",
        dbname=name,
    )
    yield name
    pg_source.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@contextlib.contextmanager
def child_sweep(cv: ClockedVault) -> Iterator[subprocess.Popen[str]]:
    """`housekeeping.sweep` in another process on the same state, at the test's time."""
    settings: Settings = cv.ctx.settings
    assert settings.database_url is not None
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SWEEP,
            str(settings.home),
            settings.database_url,
            settings.datastore,
            settings.archive,
            cv.now().isoformat(),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def wait_for(
    what: str, condition: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the sweep ended before {what}: rc={proc.returncode}\n{out}\n{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.001)


def kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def state(cv: ClockedVault, datastore: Path, archive: Path) -> tuple[object, ...]:
    """Everything a sweep could change: rows, tier flags, stored files, job records."""
    rows = [
        (p.id, p.state, p.in_vault, p.in_archive, p.archive_location, p.rehydrated_until)
        for p in cv.all_rows()
    ]
    job_rows = [(j.id, j.operation, j.status) for j in cv.jobs()]
    return rows, files_under(datastore), files_under(archive), job_rows


def no_housekeeping_job_left_running(cv: ClockedVault) -> None:
    left = [
        (j.operation, j.recovery_point_id, j.worker_id)
        for j in cv.jobs()
        if j.operation in ("Tiering", "Deletion") and j.status == jobs.IN_PROGRESS
    ]
    assert not left, f"housekeeping jobs left InProgress after the sweep converged: {left}"


def test_sweep_killed_mid_tier_move_and_mid_deletion_converges(
    tmp_path: Path, pg_source: PgCluster, pg_metadata: PgCluster, big_database: str
) -> None:
    with (
        fresh_pg_database(pg_metadata) as metadata_url,
        clocked_vault(tmp_path, POLICY, metadata_url=metadata_url) as (cv, datastore, archive),
    ):
        big = cv.protect(pg_source, big_database, server="src")
        big_id = cv.backup(big).recovery_point_id
        assert big_id is not None
        cv.advance(timedelta(weeks=4))
        small = cv.protect(pg_source, tiny_database(pg_source, "crash"), server="src")
        small_id = cv.backup(small).recovery_point_id
        assert small_id is not None
        cv.stop_workers()  # from here on only sweeps run: the child's and the test's
        point = cv.point(big_id)
        assert point.stored_bytes > BIG_BYTES * 0.9  # random data: zstd can't shrink it
        archived_dir = archive / point.location

        # -- 1. kill the sweep while it copies the big point to ArchiveStore ---------------------
        cv.advance(timedelta(weeks=1, hours=1))  # 5 weeks + 1 hour after the big backup
        with child_sweep(cv) as proc:
            wait_for(
                "the archive copy to start",
                lambda: any("#" in f for f in files_under(archived_dir)),
                proc,
            )
            os.kill(proc.pid, signal.SIGSTOP)  # freeze it mid-copy, look, then kill it
            stored = files_under(archived_dir)
            assert MANIFEST not in stored, stored
            assert "dump.pgc.zst" not in stored, stored
            with cv.ctx.db.session() as s:  # what a worker polling for jobs would get now
                claimed = jobs.claim_next(s, "test:0:probe", cv.now())
                taken = (claimed.operation, claimed.id) if claimed else None
            assert taken is None, f"a worker could claim a housekeeping job mid-sweep: {taken}"
            kill(proc)

        # The crash left the point where it was: listed, whole in VaultStore, not archived.
        point = cv.point(big_id)
        assert point.state == recovery_points.COMMITTED
        assert (point.in_vault, point.in_archive) == (True, False)
        assert sorted(cv.vault_tier(point).list()) == expected_objects(point)
        # The partial copy is hidden: no manifest, no half object; a small object the sweep had
        # already copied whole (format 2's schema.toc.zst, copied first) may stand, unreferenced.
        copied = cv.ctx.archive.child(point.location).list()
        assert MANIFEST not in copied, copied
        assert set(copied) <= {"schema.toc.zst"}, copied
        assert {p.id for p in cv.points(big)} == {big_id}

        done = cv.sweep()
        assert (done["tiered"], done["vaultCopiesExpired"]) == (1, 1), done
        point = cv.point(big_id)
        assert (point.in_vault, point.in_archive) == (False, True)
        assert sorted(cv.archive_tier(point).list()) == expected_objects(point)
        assert_consistent(cv, datastore, archive)  # also: no partial upload left anywhere
        no_housekeeping_job_left_running(cv)
        tiering = [j for j in cv.jobs("Tiering") if j.recovery_point_id == big_id]
        assert [j.status for j in tiering] == [jobs.COMPLETED], [
            (j.status, j.error_code) for j in tiering
        ]
        before = state(cv, datastore, archive)
        assert set(cv.sweep().values()) == {0}
        assert state(cv, datastore, archive) == before, "a repeated sweep changed something"
        assert [p.id for p in cv.points(small)] == [small_id]

        # -- the small point moves to the archive on time, with no crash -----------------------
        cv.advance(timedelta(weeks=4))  # 9 weeks + 1 hour: the small point's vault time is up
        assert cv.sweep()["tiered"] == 1
        assert cv.point(small_id).datastores == ["ArchiveStore"]
        assert_consistent(cv, datastore, archive)

        # -- nothing goes before its time --------------------------------------------------
        expiry = cv.point(big_id).expires_at
        assert expiry == retention.expires_at(START, "Default", POLICY)
        assert expiry is not None
        cv.advance(expiry - timedelta(hours=1) - cv.now())
        assert cv.sweep()["expired"] == 0
        assert {p.id for p in cv.points(big)} == {big_id}

        # -- 2. kill the sweep in the middle of deleting the big point -------------------------
        cv.advance(timedelta(hours=2))
        settings = cv.ctx.settings
        assert settings.database_url is not None
        dsn = settings.database_url
        with psycopg.connect(dsn) as holder:
            holder.execute(
                "SELECT 1 FROM recovery_points WHERE id = %s FOR KEY SHARE", [big_id]
            ).fetchall()
            with child_sweep(cv) as proc:

                def row_delete_blocked() -> bool:
                    marked = cv.point(big_id).state == recovery_points.DELETING
                    return marked and row_deleters_waiting(dsn) > 0

                wait_for("the deletion to wait on the row lock", row_delete_blocked, proc)
                kill(proc)
            holder.rollback()

        # The crash came after the objects went, before the row did: the point is no longer
        # listed (it was marked Deleting first), and its Deletion job is recorded.
        assert cv.points(big) == []
        assert files_under(archive / point.location) == []
        assert files_under(datastore / point.location) == []
        assert cv.point(big_id).state == recovery_points.DELETING
        deletions = [j for j in cv.jobs("Deletion") if j.recovery_point_id == big_id]
        assert [j.status for j in deletions] == [jobs.COMPLETED]

        done = cv.sweep()
        assert done["deletions"] == 1, done
        assert all(p.id != big_id for p in cv.all_rows())
        assert_consistent(cv, datastore, archive)
        no_housekeeping_job_left_running(cv)
        before = state(cv, datastore, archive)
        assert set(cv.sweep().values()) == {0}
        assert state(cv, datastore, archive) == before, "a repeated sweep changed something"

        # The small point (expires a month later) survived both crashes, whole.
        [small_point] = cv.points(small)
        assert small_point.expires_at is not None
        assert small_point.expires_at > cv.now()
        assert sorted(cv.archive_tier(small_point).list()) == expected_objects(small_point)


def row_deleters_waiting(dsn: str) -> int:
    """Sessions waiting for a lock while deleting a recovery-point row."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query LIKE 'DELETE FROM recovery_points%%'"
        ).fetchone()
        assert row is not None
        return int(row[0])
