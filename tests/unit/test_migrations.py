"""Schema drift: the migrations must build exactly the schema the models declare."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from pgvault import migrations, models
from pgvault.db import make_engine


def test_migrations_match_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    try:
        migrations.upgrade(engine)
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, models.metadata())
        assert diff == [], f"models and migrations differ: {diff}"
    finally:
        engine.dispose()


def test_upgrade_is_idempotent_and_reaches_head(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    try:
        migrations.upgrade(engine)
        migrations.upgrade(engine)
        head = ScriptDirectory.from_config(migrations.config()).get_current_head()
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == head
            tables = set(inspect(conn).get_table_names())
        assert set(models.metadata().tables) <= tables
    finally:
        engine.dispose()


def test_single_head() -> None:
    heads = ScriptDirectory.from_config(migrations.config()).get_heads()
    assert len(heads) == 1, f"multiple alembic heads: {heads}"


def test_0006_keeps_existing_jobs_and_adds_replicas(tmp_path: Path) -> None:
    """Jobs written before cross-region restore keep their data, with no cancel asked."""
    engine = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    try:
        migrations.upgrade(engine, "0005")
        with engine.begin() as conn:
            conn.execute(text("PRAGMA foreign_keys=OFF"))
            conn.execute(
                text(
                    "INSERT INTO jobs (id, vault_id, operation, category, status, phase, phases,"
                    " bytes_done, created_at, params, result, is_user_triggered, priority)"
                    " VALUES ('j1', 'v1', 'Backup', 'Backup', 'Completed', 'Done', '[]', 7,"
                    " '2026-11-30 00:00:00.000000', '{}', '{}', 1, 0)"
                )
            )
        migrations.upgrade(engine)
        with engine.connect() as conn:
            row = conn.execute(text("SELECT bytes_done, cancel_requested FROM jobs")).one()
            assert tuple(row) == (7, 0)
            assert "replicas" in set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_0008_upgrade_keeps_data_and_starts_the_access_epoch(tmp_path: Path) -> None:
    """From 0005 with an assignment in place: the row survives, the epoch starts at 0 and
    moves when an assignment is deleted (in the deleting transaction)."""
    from sqlalchemy.orm import Session

    from pgvault import access_epoch, rbac

    engine = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    try:
        migrations.upgrade(engine, "0005")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO role_assignments (id, scope, scope_key, role_id, principal_id, "
                    "principal_type, created_by, created_at) VALUES ('a1', '/', '/', 'r1', 'p1', "
                    "'User', NULL, '2026-11-30 00:00:00.000000')"
                )
            )
        migrations.upgrade(engine)
        with Session(engine) as s:
            assert access_epoch.current(s) == 0
            row = s.get(rbac.Assignment, "a1")
            assert row is not None
            s.delete(row)
            s.commit()
            assert access_epoch.current(s) == 1
        with engine.connect() as conn:
            indexes = {i["name"] for i in inspect(conn).get_indexes("recovery_points")}
        assert "ix_recovery_points_instance_created" in indexes
    finally:
        engine.dispose()
