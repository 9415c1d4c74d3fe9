"""procrastinate schema on PostgreSQL metadata

The procrastinate executor (`PGVAULT_EXECUTOR=procrastinate`, `pgvault worker`) keeps its
queue in the metadata database: its tables and functions are created here, in the
transaction of pgvault's own upgrade, so `serve` and every worker find them. SQLite
metadata (the embedded executor) gets nothing. Idempotent: a schema already applied (e.g.
by `procrastinate schema --apply`) is left as it is. No pgvault table changes.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 02:00:00.000000
"""

from __future__ import annotations

from alembic import op

from pgvault import procapp

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    procapp.apply_schema(bind.connection.driver_connection)


def downgrade() -> None:
    """Kept: the queue may hold other applications' jobs; drop it with Procrastinate's tools."""
    return None
