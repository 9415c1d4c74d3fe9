"""Alembic environment: runs against the engine pgvault passes in (or PGVAULT_DATABASE_URL)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from pgvault import migrations, models
from pgvault.config import Settings
from pgvault.db import make_engine

target_metadata = models.metadata()
#: Advisory lock key held while migrating ("pgvm"): `serve` and `worker`s starting together on
#: a fresh PostgreSQL metadata database (systemd at boot) otherwise both create the schema.
MIGRATION_LOCK = 0x7067766D


def run() -> None:
    engine = context.config.attributes.get("engine") or make_engine(
        Settings.from_env().metadata_url
    )
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # until this transaction ends; the next one in
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
        context.configure(
            connection=conn,
            target_metadata=target_metadata,
            render_as_batch=conn.dialect.name == "sqlite",
            compare_type=True,
            include_object=migrations.env_filter,
        )
        context.run_migrations()


run()
