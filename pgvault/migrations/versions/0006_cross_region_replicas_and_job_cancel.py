"""cross-region replicas, job cancel

`replicas`: recovery points copied to the vault's paired region and verified there (one
row per point and region, with the lag it saw). `jobs.cancel_requested`: a cancel asked
for a running job, which its worker honours at its next progress report. Existing rows
keep their data (no replicas, no cancel asked).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 02:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pgvault.orm

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("point_id", sa.String(length=32), nullable=False),
        sa.Column("region", sa.String(length=40), nullable=False),
        sa.Column("instance_id", sa.String(length=36), nullable=False),
        sa.Column("vault_id", sa.String(length=36), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("location", sa.String(length=500), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=False),
        sa.Column("point_created_at", pgvault.orm.UTCDateTime(timezone=True), nullable=False),
        sa.Column("replicated_at", pgvault.orm.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lag_seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("point_id", "region", name=op.f("pk_replicas")),
    )
    with op.batch_alter_table("replicas", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_replicas_instance_id"), ["instance_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_replicas_vault_id"), ["vault_id"], unique=False)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("cancel_requested")
    with op.batch_alter_table("replicas", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_replicas_vault_id"))
        batch_op.drop_index(batch_op.f("ix_replicas_instance_id"))
    op.drop_table("replicas")
