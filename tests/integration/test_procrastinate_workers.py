"""Three `pgvault worker` processes (Procrastinate executor) on one PostgreSQL metadata DB.

One module-scoped set: a metadata database, three source clusters of 20 small databases
each (60 protected instances), one pgvault home shared by the test's own service (which
defers jobs, like `pgvault serve --no-worker`) and three real `pgvault worker` processes.

- A backlog of 60 backups, queued before any worker starts, drains: every backup runs
  exactly once, each worker runs some, and the job timestamps never show more than one
  backup per source server, one job per worker or two jobs in all (the limits set here);
  neither do the sources' own pg_stat_activity samples (databases in backup per server).
- `kill -9` of the worker in the middle of a scheduled backup: the job ends Failed with
  WorkerLost and a reason, its new attempt completes, and the instance holds exactly one
  recovery point, nothing of the lost attempt's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime

import psycopg
import pytest
from sqlalchemy import select

from pgvault import instances, jobs, recovery_points, vaults
from pgvault.jobkinds import backup
from tests.integration.conftest import RG
from tests.support.fleet import Fleet
from tests.support.fleet import fleet as make_fleet
from tests.support.pg import PgCluster

SERVERS = 3
DATABASES_PER_SERVER = 20
WORKERS = 3
#: One job per worker: three workers can then hold the three servers' runnable jobs only
#: by each taking one, so each one works. (At two, two workers could hold all three, and a
#: worker that finishes fetches its next job before an idle one wakes: the third worked or
#: not by chance. Jobs never starve either way: they are fetched oldest first, and a fetched
#: job waits for a global slot in line, `procworker._wait_for_slot`.)
WORKER_CONCURRENCY = 1
GLOBAL_CONCURRENCY = 2
BIG_ROWS = 1_500  # x 1 MiB of text: pg_dump streams ~1.5 GB, seconds to back up


@pytest.fixture(scope="module")
def fleet(pg_metadata: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    limits = {
        "PGVAULT_WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        "PGVAULT_GLOBAL_CONCURRENCY": str(GLOBAL_CONCURRENCY),
    }
    base = tmp_path_factory.mktemp("workers")
    with make_fleet(pg_metadata, base, SERVERS, DATABASES_PER_SERVER, **limits) as made:
        yield made


def _big_database(cluster: PgCluster) -> None:
    cluster.execute('CREATE DATABASE "big" TEMPLATE template0')
    cluster.execute(
        "CREATE TABLE filler (id int PRIMARY KEY, payload text COMPRESSION pglz);"
        " INSERT INTO filler SELECT g, repeat(md5(g::text), 32768)"
        f" FROM generate_series(1, {BIG_ROWS}) g",
        dbname="big",
    )


#: Databases a pgvault session (probe or pg_dump, application_name "pgvault") is busy in; a
#: closed session whose backend has not exited yet is "idle" and not counted.
BUSY_DATABASES = (
    "SELECT count(DISTINCT datname) FROM pg_stat_activity WHERE application_name = 'pgvault'"
    " AND state IN ('active', 'idle in transaction')"
)


@contextlib.contextmanager
def _dumps_sampled(sources: list[PgCluster]) -> Iterator[list[int]]:
    """Sample each source's pg_stat_activity every 50 ms while the block runs; yields, per
    source, the most databases seen backed up at once (filled in when the block ends)."""
    most = [0] * len(sources)
    stop = threading.Event()

    def sample(n: int, cluster: PgCluster) -> None:
        with psycopg.connect(cluster.admin_dsn(), autocommit=True) as conn:
            while not stop.wait(0.05):
                row = conn.execute(BUSY_DATABASES).fetchone()
                most[n] = max(most[n], row[0] if row else 0)

    threads = [threading.Thread(target=sample, args=(n, c)) for n, c in enumerate(sources)]
    for t in threads:
        t.start()
    try:
        yield most
    finally:
        stop.set()
        for t in threads:
            t.join()


def _max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    """Most intervals open at one instant (an end at t comes before a start at t)."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def test_three_workers_drain_a_backlog_within_the_limits(fleet: Fleet) -> None:
    v = fleet.vault
    with _dumps_sampled(fleet.sources) as most_dumps:
        fleet.start_workers(WORKERS)
        fleet.wait_workers_ready(WORKERS)
        queued = fleet.queue_backups()
        assert len(queued) == SERVERS * DATABASES_PER_SERVER
        with psycopg.connect(fleet.env["PGVAULT_DATABASE_URL"]) as conn:
            deferred = conn.execute(
                "SELECT args->>'job_id', count(*) FROM procrastinate_jobs GROUP BY 1"
            ).fetchall()
        # Workers are already taking them (a finished one's queue row is deleted): none twice.
        assert {job_id for job_id, _ in deferred} <= queued
        assert all(n == 1 for _, n in deferred), deferred
        done = fleet.wait_all(queued, timeout=240)
    assert max(most_dumps) >= 1, "the sampler saw the backups"
    assert max(most_dumps) <= 1, f"a source server served {max(most_dumps)} backups at once"

    failed = {j.id: (j.error_code, j.error_message) for j in done if j.status != jobs.COMPLETED}
    assert not failed, failed
    with v.ctx.db.session() as s:
        points = Counter(p.instance_id for p in s.scalars(select(recovery_points.RecoveryPoint)))
        server_of = {i.id: i.server_id for i in s.scalars(select(instances.Instance))}
    assert len(points) == len(fleet.instances)
    assert set(points.values()) == {1}, "every backup ran exactly once"

    spans: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for j in done:
        assert j.started_at is not None
        assert j.ended_at is not None
        assert j.worker_id
        span = (j.started_at, j.ended_at)
        spans[f"server {server_of[j.instance_id or '']}"].append(span)
        spans[f"worker {j.worker_id}"].append(span)
        spans["all"].append(span)
    workers_used = {k for k in spans if k.startswith("worker ")}
    assert len(workers_used) == WORKERS, f"each worker did work: {sorted(workers_used)}"
    for key, intervals in spans.items():
        limit = (
            GLOBAL_CONCURRENCY if key == "all"
            else WORKER_CONCURRENCY if key.startswith("worker ")
            else 1
        )  # fmt: skip
        assert _max_overlap(intervals) <= limit, f"{key}: more than {limit} jobs at once"


def _pid_of(worker_id: str) -> int:
    return int(worker_id.split(":")[1])


def test_killed_worker_fails_the_job_and_its_retry_succeeds(fleet: Fleet) -> None:
    v = fleet.vault
    cluster = fleet.sources[0]
    _big_database(cluster)
    name = v.protect(cluster, "big", server="src0")
    now = v.ctx.clock.now()
    with v.ctx.db.session() as s:
        vault = vaults.get(s, v.sub, RG, v.name)
        inst = instances.get(s, vault.id, name)
        lost_id = backup.queue(s, vault, inst, now, user_triggered=False, slot=now).id

    deadline = time.monotonic() + 60
    while True:
        job = v.service.get_job(v.sub, RG, v.name, lost_id).job
        assert job.status == jobs.IN_PROGRESS, f"ended before the kill: {job.error_message}"
        if job.worker_id and job.bytes_done > 0:
            break
        assert time.monotonic() < deadline, "the big backup never started streaming"
        time.sleep(0.05)
    victim = _pid_of(job.worker_id)
    location = job.params["location"]
    os.kill(victim, signal.SIGKILL)

    deadline = time.monotonic() + 120
    while True:
        lost = v.service.get_job(v.sub, RG, v.name, lost_id).job
        retries = [j for j in fleet.jobs() if (j.params or {}).get("retryOf") == lost_id]
        if lost.status != jobs.IN_PROGRESS and retries and retries[0].status != jobs.IN_PROGRESS:
            break
        assert time.monotonic() < deadline, f"no retry finished\n{fleet.log_tail()}"
        time.sleep(0.25)

    assert lost.status == jobs.FAILED
    assert lost.error_code == "WorkerLost"
    assert "worker running this job stopped" in (lost.error_message or "")
    (retry,) = retries
    assert retry.status == jobs.COMPLETED, (retry.error_code, retry.error_message)
    assert retry.params["attempt"] == 2
    assert _pid_of(retry.worker_id or "") != victim
    _, points = v.service.list_points(v.sub, RG, v.name, name)
    assert [p.id for p in points] == [retry.params["pointId"]]
    assert v.ctx.datastore.child(location).list() == [], "the lost attempt left objects"
    on_disk = fleet.settings.home / "datastore" / location  # incl. unfinished uploads
    assert not on_disk.exists() or not any(p.is_file() for p in on_disk.rglob("*"))
