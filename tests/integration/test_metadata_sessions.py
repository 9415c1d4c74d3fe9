"""The metadata database's two kinds of session, on SQLite and on a real PostgreSQL.

`Database.read()` serves the API's GETs: on PostgreSQL its statements run in autocommit (no
BEGIN/COMMIT round trips), and it refuses to write. A pooled connection that sat idle is
pinged before use and replaced when its server went away (not on every checkout). Processes
starting together on a fresh PostgreSQL database migrate it once."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from pgvault import db as dbmod
from pgvault.config import Settings
from pgvault.context import Context
from pgvault.db import Database
from pgvault.tenancy import Subscription
from tests.support.pg import PgCluster

SAME_TRANSACTION = "SELECT transaction_timestamp() = statement_timestamp()"


@pytest.fixture
def database(metadata_url: str | None, tmp_path: Path) -> Iterator[Database]:
    home = tmp_path / "home"
    ctx = Context.create(Settings(home=home, database_url=metadata_url, datastore_url="memory://"))
    ctx.migrate()
    yield ctx.db
    ctx.db.dispose()


def test_reads_run_without_a_transaction_around_them(database: Database) -> None:
    with database.read() as s:
        assert s.scalar(text("SELECT 1")) == 1
        if not database.is_sqlite:  # each statement is its own transaction
            assert s.scalar(text(SAME_TRANSACTION)) is True
    if not database.is_sqlite:
        with database.session() as s:  # a write session is one transaction
            s.execute(text("SELECT 1"))
            assert s.scalar(text(SAME_TRANSACTION)) is False


def _subscription() -> Subscription:
    return Subscription(id="00000000-0000-0000-0000-00000000beef", display_name="x")


def test_a_read_session_refuses_to_write(database: Database) -> None:
    with database.read() as s:
        before = s.scalar(select(func.count()).select_from(Subscription))
    with database.read() as s:
        s.add(_subscription())
        with pytest.raises(RuntimeError, match="read"):
            s.flush()  # refused before anything is sent
        s.expunge_all()
    with pytest.raises(RuntimeError, match="read"), database.read() as s:
        s.add(_subscription())  # refused when the block ends (nothing is committed)
    with database.read() as s:
        assert s.scalar(select(func.count()).select_from(Subscription)) == before


def test_a_connection_whose_server_went_away_is_replaced_after_idling(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if database.is_sqlite:
        pytest.skip("a SQLite connection has no server to lose")
    with database.read() as s:
        pid = s.scalar(text("SELECT pg_backend_pid()"))
    with database.read() as s:  # used again at once: the same pooled connection, no ping
        assert s.scalar(text("SELECT pg_backend_pid()")) == pid
    admin = Database(database.url)  # another process, say, or the server restarting
    with admin.session() as s:
        assert s.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}) is True
    admin.dispose()
    monkeypatch.setattr(dbmod, "PING_IDLE_SECONDS", 0.0)  # every checkout has now idled
    with database.read() as s:
        assert s.scalar(text("SELECT pg_backend_pid()")) != pid
    with database.session() as s:
        assert s.scalar(text("SELECT 1")) == 1


def test_processes_starting_together_migrate_a_fresh_database_once(
    pg_metadata: PgCluster,
) -> None:
    """`serve` and `worker`s started at once (systemd at boot) on an empty PostgreSQL
    metadata database: one creates the schema, the others wait for it and find it done."""
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    pg_metadata.execute(f'CREATE DATABASE "{name}"')
    url = pg_metadata.superuser_url(name)
    code = (
        "import sys; from pgvault import migrations; from pgvault.db import Database;"
        "migrations.upgrade(Database(sys.argv[1]).engine)"
    )
    try:
        procs = [
            subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE)
            for _ in range(4)
        ]
        failures = [p.communicate(timeout=120)[1].decode()[-2000:] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, failures
        admin = Database(url)
        with admin.read() as s:
            assert len(s.execute(text("SELECT version_num FROM alembic_version")).all()) == 1
        admin.dispose()
    finally:
        pg_metadata.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
