"""Three `pgvault worker` processes (Procrastinate executor) on one PostgreSQL metadata DB.

One module-scoped set: a metadata database, three source clusters of 20 small databases
each (60 protected instances), one pgvault home shared by the test's own service (which
defers jobs, like `pgvault serve --no-worker`) and three real `pgvault worker` processes.

- A backlog of 60 backups, queued before any worker starts, drains: every backup runs
  exactly once, each worker runs some, and the job timestamps never show more than one
  backup per source server, two jobs per worker or two jobs in all (the limits set here).
- `kill -9` of the worker in the middle of a scheduled backup: the job ends Failed with
  WorkerLost and a reason, its new attempt completes, and the instance holds exactly one
  recovery point, nothing of the lost attempt's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select

from pgvault import instances, jobs, recovery_points, vaults
from pgvault.config import Settings
from pgvault.context import Context
from pgvault.executors import RemoteExecutor
from pgvault.jobkinds import backup
from pgvault.services import InstanceSpec, Service
from tests.integration.clocked import fresh_pg_database, new_master_key
from tests.integration.conftest import RG, Vault
from tests.support.pg import PgCluster

T0 = 0.0
PGVAULT_BIN = str(Path(sys.executable).parent / "pgvault")
SERVERS = 3
DATABASES_PER_SERVER = 20
WORKERS = 3
WORKER_CONCURRENCY = 2
GLOBAL_CONCURRENCY = 2
BIG_ROWS = 1_500  # x 1 MiB of text: pg_dump streams ~1.5 GB, seconds to back up


@dataclass
class Fleet:
    vault: Vault
    settings: Settings
    env: dict[str, str]
    sources: list[PgCluster]
    procs: list[subprocess.Popen[bytes]]
    logs: list[Path]
    instances: list[str]  # names of the 60 small instances

    def start_workers(self) -> None:
        for n in range(WORKERS):
            with self.logs[n].open("ab") as log:  # the child keeps its own descriptor
                self.procs.append(
                    subprocess.Popen(
                        [PGVAULT_BIN, "worker"], env=self.env, stdout=log, stderr=subprocess.STDOUT
                    )
                )

    def jobs(self) -> list[jobs.Job]:
        with self.vault.ctx.db.session() as s:
            return list(s.scalars(select(jobs.Job)))

    def wait_all(self, ids: set[str], timeout: float) -> list[jobs.Job]:
        deadline = time.monotonic() + timeout
        while True:
            done = [j for j in self.jobs() if j.id in ids and j.status != jobs.IN_PROGRESS]
            if len(done) == len(ids):
                return done
            dead = [p.pid for p in self.procs if p.poll() is not None]
            assert time.monotonic() < deadline, (
                f"{len(done)}/{len(ids)} jobs finished; exited workers {dead}\n{self.log_tail()}"
            )
            time.sleep(0.25)

    def log_tail(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.logs if p.exists())


def _small_databases(cluster: PgCluster, n: int) -> list[str]:
    names = [f"db{i:02d}" for i in range(n)]
    cluster.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)", dbname="template1")
    cluster.execute("INSERT INTO notes SELECT g, 'n' || g FROM generate_series(1, 20) g", dbname="template1")  # fmt: skip
    for name in names:
        cluster.execute(f'CREATE DATABASE "{name}"')
    return names


def _protect_all(vault: Vault, cluster: PgCluster, server: str) -> list[str]:
    """Protect every small database of `cluster`: one server, one secret, no per-database
    validation round trip (the backups connect anyway)."""
    vault.register(cluster, server)
    uri = vault.admin_secret(cluster, f"{server}-admin")
    policy_id = f"{vault.vault_id}/backupPolicies/weekly"
    server_row = vault.service.get_server(vault.sub, RG, server)
    names = []
    for db in _small_databases(cluster, DATABASES_PER_SERVER):
        spec = InstanceSpec(
            database_id=server_row.database_id(db), policy_id=policy_id, secret_uri=uri
        )
        name = f"{server}-{db}"
        vault.service.put_instance(vault.sub, RG, vault.name, name, spec)
        names.append(name)
    return names


def _big_database(cluster: PgCluster) -> None:
    cluster.execute('CREATE DATABASE "big" TEMPLATE template0')
    cluster.execute(
        "CREATE TABLE filler (id int PRIMARY KEY, payload text COMPRESSION pglz);"
        " ALTER TABLE filler ALTER payload SET STORAGE EXTENDED;"
        " INSERT INTO filler SELECT g, repeat(md5(g::text), 32768)"
        f" FROM generate_series(1, {BIG_ROWS}) g",
        dbname="big",
    )


@pytest.fixture(scope="module")
def fleet(pg_metadata: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    global T0
    T0 = time.monotonic()
    base = tmp_path_factory.mktemp("workers")
    with ThreadPoolExecutor(SERVERS) as threads:  # clusters start and stop side by side
        sources = list(threads.map(PgCluster.start, [f"src{n}" for n in range(SERVERS)]))
    print("CLUSTERS", time.monotonic() - T0)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with fresh_pg_database(pg_metadata) as url:
            key = new_master_key()
            settings = Settings(
                home=base / "home",
                database_url=url,
                master_key=key,
                public_url="http://127.0.0.1:8080",
                executor="procrastinate",
                local_storage_roots=(base,),
                storage_endpoint_allow=("127.0.0.0/8", "::1"),
            )
            ctx = Context.create(settings)
            service = Service(ctx, RemoteExecutor(ctx))
            service.bootstrap()  # migrations: Procrastinate's schema too
            sub = service.list_subscriptions()[0].id
            service.put_keyvault(sub, RG, "kv1", "eastus")
            service.put_vault(sub, RG, "vault1", "eastus", {}, {})
            service.put_policy(sub, RG, "vault1", "weekly", {})
            vault = Vault(service, ctx, sub)
            vault.grant_identity()
            names = []
            for n, cluster in enumerate(sources):
                names += _protect_all(vault, cluster, f"src{n}")
            print("PROTECTED", time.monotonic() - T0)
            env = {k: v for k, v in os.environ.items() if not k.startswith("PGVAULT_")}
            env.update(
                PGVAULT_HOME=str(settings.home),
                PGVAULT_DATABASE_URL=url,
                PGVAULT_MASTER_KEY=key,
                PGVAULT_PUBLIC_URL="http://127.0.0.1:8080",
                PGVAULT_EXECUTOR="procrastinate",
                PGVAULT_LOCAL_STORAGE_ROOTS=str(base),
                PGVAULT_STORAGE_ENDPOINT_ALLOW="127.0.0.0/8,::1",
                PGVAULT_WORKER_CONCURRENCY=str(WORKER_CONCURRENCY),
                PGVAULT_GLOBAL_CONCURRENCY=str(GLOBAL_CONCURRENCY),
                PGVAULT_HEARTBEAT_SECONDS="0.5",
                PGVAULT_STALE_AFTER_SECONDS="3",
            )
            logs = [base / f"worker{n}.log" for n in range(WORKERS)]
            yield Fleet(vault, settings, env, sources, procs, logs, names)
            print("TEARDOWN", time.monotonic() - T0)
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(20)
            ctx.db.dispose()
            print("WORKERS STOPPED", time.monotonic() - T0)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        with ThreadPoolExecutor(SERVERS) as threads:
            list(threads.map(PgCluster.stop, sources))
        print("CLUSTERS STOPPED", time.monotonic() - T0)


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
    print("SETUP", time.monotonic() - T0)
    queued = {
        v.service.adhoc_backup(v.sub, RG, v.name, name, None, None).id for name in fleet.instances
    }
    assert len(queued) == SERVERS * DATABASES_PER_SERVER
    with psycopg.connect(fleet.env["PGVAULT_DATABASE_URL"]) as conn:
        deferred = conn.execute(
            "SELECT args->>'job_id', count(*) FROM procrastinate_jobs GROUP BY 1"
        ).fetchall()
    assert {job_id: n for job_id, n in deferred} == dict.fromkeys(queued, 1)

    t0 = time.monotonic()
    fleet.start_workers()
    done = fleet.wait_all(queued, timeout=240)
    print("DRAIN", time.monotonic() - t0)

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
