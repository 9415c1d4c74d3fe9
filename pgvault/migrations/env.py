"""Alembic environment: runs against the engine pgvault passes in (or PGVAULT_DATABASE_URL)."""

from __future__ import annotations

from alembic import context

from pgvault import migrations, models
from pgvault.config import Settings
from pgvault.db import make_engine

target_metadata = models.metadata()


def run() -> None:
    engine = context.config.attributes.get("engine") or make_engine(
        Settings.from_env().metadata_url
    )
    with engine.begin() as conn:
        context.configure(
            connection=conn,
            target_metadata=target_metadata,
            render_as_batch=conn.dialect.name == "sqlite",
            compare_type=True,
            include_object=migrations.env_filter,
        )
        context.run_migrations()


run()
