"""The procrastinate executor's seam, on PostgreSQL metadata, without workers.

- Migration 0007 creates Procrastinate's schema beside pgvault's tables, keeps their data,
  and is idempotent.
- The embedded pool keeps to one backup per source server (on SQLite and PostgreSQL).
- A queued Job row is deferred in the transaction that creates it: committed, exactly one
  Procrastinate job carries its id (with the lock and priority of the limits); rolled back,
  none; a job finished in its own transaction (housekeeping), none.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from pgvault import jobs, migrations, vaults
from pgvault.config import Settings
from pgvault.context import Context
from pgvault.db import make_engine
from pgvault.executors import RemoteExecutor
from pgvault.services import Service
from tests.integration.clocked import fresh_pg_database, tiny_database
from tests.integration.conftest import RG, Vault
from tests.support.pg import PgCluster


def test_migration_0007_adds_procrastinate_and_keeps_data(pg_metadata: PgCluster) -> None:
    with fresh_pg_database(pg_metadata) as url:
        engine = make_engine(url)
        try:
            migrations.upgrade(engine, "0005")
            with engine.begin() as conn:
                conn.execute(
                    text("INSERT INTO leases (name, holder, expires_at) VALUES ('x', 'me', now())")
                )
                assert (
                    conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar() is None
                )
            migrations.upgrade(engine)
            migrations.upgrade(engine)  # idempotent
            with engine.connect() as conn:
                assert (
                    MigrationContext.configure(conn).get_current_revision()
                    == ScriptDirectory.from_config(migrations.config()).get_current_head()
                )
                assert conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar()
                assert conn.execute(text("SELECT holder FROM leases")).scalar() == "me"
        finally:
            engine.dispose()


@pytest.fixture
def remote(pg_metadata: PgCluster, tmp_path: Path) -> Iterator[tuple[Service, str, str]]:
    with fresh_pg_database(pg_metadata) as url:
        settings = Settings(
            home=tmp_path / "home",
            database_url=url,
            executor="procrastinate",
            source_server_concurrency=3,
            local_storage_roots=(tmp_path,),
        )
        ctx = Context.create(settings)
        service = Service(ctx, RemoteExecutor(ctx))
        service.bootstrap()
        sub = service.list_subscriptions()[0].id
        service.put_vault(sub, RG, "vault1", "eastus", {}, {})
        with ctx.db.session() as s:
            vault_id = vaults.get(s, sub, RG, "vault1").id
        try:
            yield service, vault_id, url
        finally:
            ctx.db.dispose()


def _deferred(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn:
        cur = conn.execute(
            "SELECT args->>'job_id' AS job_id, lock, priority, queue_name, status"
            " FROM procrastinate_jobs ORDER BY id"
        )
        names = [c.name for c in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def test_a_job_is_deferred_with_its_row_and_only_then(remote: tuple[Service, str, str]) -> None:
    service, vault_id, url = remote
    ctx = service.ctx
    now = ctx.clock.now()

    class Boom(Exception):
        pass

    def create_then_fail() -> None:
        with ctx.db.session() as s:
            jobs.create(s, vault_id=vault_id, instance_id=None, operation="Rehydrate", params={}, now=now)  # fmt: skip
            raise Boom

    with pytest.raises(Boom):
        create_then_fail()
    assert _deferred(url) == [], "a rolled-back job is not queued"

    with ctx.db.session() as s:
        done = jobs.create(
            s, vault_id=vault_id, instance_id=None, operation="Tiering", params={}, now=now
        )
        jobs.finish(done, now)
    assert _deferred(url) == [], "a job recorded finished in its transaction is not queued"

    with ctx.db.session() as s:
        urgent = jobs.create(
            s, vault_id=vault_id, instance_id=None, operation="Rehydrate", params={}, now=now,
            priority=10,
        )  # fmt: skip
        restore = jobs.create(
            s, vault_id=vault_id, instance_id=None, operation=jobs.RESTORE, now=now,
            params={"target": {"server_id": "/Subscriptions/S/servers/Target"}},
        )  # fmt: skip
    rows = _deferred(url)
    assert [r["job_id"] for r in rows] == [urgent.id, restore.id], "each exactly once"
    assert rows[0]["priority"] == 10
    assert rows[0]["lock"] == f"instance:{urgent.id}"
    assert rows[1]["lock"].startswith("target:/subscriptions/s/servers/target:")
    assert {r["queue_name"] for r in rows} == {"pgvault"}
    assert {r["status"] for r in rows} == {"todo"}


def test_embedded_pool_runs_one_backup_per_source_server(
    vault: Vault, pg_source: PgCluster
) -> None:
    """The embedded pool (2 threads) holds back a backup whose server already runs one."""
    names = [
        vault.protect(pg_source, tiny_database(pg_source, "lim"), server="src") for _ in range(4)
    ]
    queued = [vault.service.adhoc_backup(vault.sub, RG, vault.name, n, None, None) for n in names]
    done = [vault.wait(j.id) for j in queued]
    assert {j.status for j in done} == {jobs.COMPLETED}
    spans = sorted((j.started_at, j.ended_at) for j in done)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end is not None
        assert start is not None
        assert end <= start, "two backups of one server overlapped"


def test_postgresql_schema_matches_models_beside_the_queue(pg_metadata: PgCluster) -> None:
    """Procrastinate's tables are not drift: autogenerate leaves them out (env.py)."""
    from alembic.autogenerate import compare_metadata

    from pgvault import models
    from pgvault.migrations import env_filter

    with fresh_pg_database(pg_metadata) as url:
        engine = make_engine(url)
        try:
            migrations.upgrade(engine)
            with engine.connect() as conn:
                opts = {"compare_type": True, "include_object": env_filter}
                ctx = MigrationContext.configure(conn, opts=opts)
                diff = compare_metadata(ctx, models.metadata())
            assert diff == [], f"models and migrations differ on PostgreSQL: {diff}"
        finally:
            engine.dispose()
