"""A fleet for the procrastinate executor: PostgreSQL metadata, source clusters full of small
databases (each protected), and `pgvault worker` processes on one shared home.

Used by tests/integration/test_procrastinate_workers.py and benchmarks/workers.py. The
caller's own `Service` defers the jobs (like `pgvault serve --no-worker`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from sqlalchemy import select

from pgvault import jobs
from pgvault.config import Settings
from pgvault.context import Context
from pgvault.executors import RemoteExecutor
from pgvault.services import InstanceSpec, Service
from tests.integration.conftest import RG, Vault
from tests.support.pg import PgCluster

PGVAULT_BIN = str(Path(sys.executable).parent / "pgvault")


@dataclass
class Fleet:
    vault: Vault
    settings: Settings
    env: dict[str, str]
    sources: list[PgCluster]
    instances: list[str]
    base: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def start_workers(self, n: int, **env: str) -> None:
        """Start `n` more `pgvault worker` processes (extra PGVAULT_* settings in `env`)."""
        for _ in range(n):
            log = self.base / f"worker{len(self.logs)}.log"
            self.logs.append(log)
            with log.open("ab") as out:  # the child keeps its own descriptor
                self.procs.append(
                    subprocess.Popen(
                        [PGVAULT_BIN, "worker"],
                        env={**self.env, **env},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )

    def wait_workers_ready(self, n: int, timeout: float = 120) -> None:
        """Until `n` Procrastinate workers have registered (each then listens for jobs), so a
        backlog queued next reaches all of them rather than the ones that started first."""
        deadline = time.monotonic() + timeout
        query = (
            "SELECT count(*) FROM procrastinate_workers"
            " WHERE last_heartbeat > now() - interval '30 seconds'"
        )
        with psycopg.connect(self.env["PGVAULT_DATABASE_URL"], autocommit=True) as conn:
            while (row := conn.execute(query).fetchone()) is None or row[0] < n:
                dead = [p.args for p in self.procs if p.poll() is not None]
                assert not dead, f"a worker exited: {dead}; logs in {self.base}"
                assert time.monotonic() < deadline, f"fewer than {n} workers registered"
                time.sleep(0.2)

    def stop_workers(self) -> None:
        """SIGTERM every worker (Procrastinate stops cleanly) and wait; kill stragglers."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()

    def queue_backups(self) -> set[str]:
        v = self.vault
        return {v.service.adhoc_backup(v.sub, RG, v.name, n, None, None).id for n in self.instances}

    def jobs(self) -> list[jobs.Job]:
        with self.vault.ctx.db.session() as s:
            return list(s.scalars(select(jobs.Job)))

    def wait_all(self, ids: set[str], timeout: float) -> list[jobs.Job]:
        deadline = time.monotonic() + timeout
        while True:
            done = [j for j in self.jobs() if j.id in ids and j.status != jobs.IN_PROGRESS]
            if len(done) == len(ids):
                return done
            exited = [p.pid for p in self.procs if p.poll() is not None]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(done)}/{len(ids)} jobs finished; exited workers {exited}\n"
                    + self.log_tail()
                )
            time.sleep(0.25)

    def log_tail(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.logs if p.exists())


def _small_databases(cluster: PgCluster, n: int) -> list[str]:
    """`n` databases of one 20-row table (made in template1, so each copy has it)."""
    cluster.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)", dbname="template1")
    cluster.execute("INSERT INTO notes SELECT g, 'n' || g FROM generate_series(1, 20) g", dbname="template1")  # fmt: skip
    names = [f"db{i:02d}" for i in range(n)]
    for name in names:
        cluster.execute(f'CREATE DATABASE "{name}"')
    return names


def _protect_all(vault: Vault, cluster: PgCluster, server: str, count: int) -> list[str]:
    """Protect `count` new databases of `cluster`: one server, one secret, no validation
    round trip per database (the backups connect anyway)."""
    vault.register(cluster, server)
    uri = vault.admin_secret(cluster, f"{server}-admin")
    policy_id = f"{vault.vault_id}/backupPolicies/weekly"
    row = vault.service.get_server(vault.sub, RG, server)
    names = []
    for db in _small_databases(cluster, count):
        spec = InstanceSpec(database_id=row.database_id(db), policy_id=policy_id, secret_uri=uri)
        vault.service.put_instance(vault.sub, RG, vault.name, f"{server}-{db}", spec)
        names.append(f"{server}-{db}")
    return names


@contextlib.contextmanager
def fleet(
    metadata: PgCluster, base: Path, servers: int, databases_per_server: int, **env: str
) -> Iterator[Fleet]:
    """The fleet on a new metadata database of `metadata`; `env`: PGVAULT_* for the workers."""
    with ThreadPoolExecutor(servers) as threads:  # clusters start and stop side by side
        sources = list(threads.map(PgCluster.start, [f"src{n}" for n in range(servers)]))
    meta_db = f"meta_{uuid.uuid4().hex[:10]}"
    metadata.execute(f'CREATE DATABASE "{meta_db}"')
    url = metadata.superuser_url(meta_db)
    ctx: Context | None = None
    made: Fleet | None = None
    try:
        key = os.urandom(32).hex()
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
        names: list[str] = []
        for n, cluster in enumerate(sources):
            names += _protect_all(vault, cluster, f"src{n}", databases_per_server)
        worker_env = {k: v for k, v in os.environ.items() if not k.startswith("PGVAULT_")}
        worker_env.update(
            PGVAULT_HOME=str(settings.home),
            PGVAULT_DATABASE_URL=url,
            PGVAULT_MASTER_KEY=key,
            PGVAULT_PUBLIC_URL="http://127.0.0.1:8080",
            PGVAULT_EXECUTOR="procrastinate",
            PGVAULT_LOCAL_STORAGE_ROOTS=str(base),
            PGVAULT_STORAGE_ENDPOINT_ALLOW="127.0.0.0/8,::1",
            PGVAULT_HEARTBEAT_SECONDS="0.5",
            PGVAULT_STALE_AFTER_SECONDS="3",
            **env,
        )
        made = Fleet(vault, settings, worker_env, sources, names, base)
        yield made
    finally:
        if made is not None:
            made.stop_workers()
        if ctx is not None:
            ctx.db.dispose()
        metadata.execute(f'DROP DATABASE "{meta_db}" WITH (FORCE)')
        with ThreadPoolExecutor(servers) as threads:
            list(threads.map(PgCluster.stop, sources))
