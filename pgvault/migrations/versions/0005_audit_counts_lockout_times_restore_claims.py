"""audit counts, lockout times, restore claims

Identical denials share one audit row (`count`, `last_at`); lockout rows know when their
last failure came (`last_at`), so both can be pruned; a restore as files claims its
(container, prefix) in `restore_claims`. Existing rows keep their data (count 1).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 22:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pgvault.orm

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("count", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(
            sa.Column("last_at", pgvault.orm.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("last_at", pgvault.orm.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "restore_claims",
        sa.Column("container_key", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=600), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("claimed_at", pgvault.orm.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("container_key", "prefix", name=op.f("pk_restore_claims")),
    )


def downgrade() -> None:
    op.drop_table("restore_claims")
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.drop_column("last_at")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("last_at")
        batch_op.drop_column("count")
