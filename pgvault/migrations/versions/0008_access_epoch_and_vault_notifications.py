"""access epoch and vault notifications

`vault_notifications` holds each vault's Apprise URLs, encrypted with the master key
(pgvault/notifications.py). An index on recovery_points (instance_id, created_at) serves
the paged point lists. `access_epoch` holds one row whose value moves whenever principals, revoked tokens, custom
roles or role assignments change; the API caches authentication and authorisation answers
per epoch (pgvault/access_epoch.py).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 02:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pgvault.orm

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    epoch = op.create_table(
        "access_epoch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_epoch")),
    )
    op.bulk_insert(epoch, [{"id": 1, "value": 0}])
    with op.batch_alter_table("recovery_points", schema=None) as batch_op:
        batch_op.create_index(
            "ix_recovery_points_instance_created", ["instance_id", "created_at"], unique=False
        )
    op.create_table(
        "vault_notifications",
        sa.Column("vault_id", sa.String(length=36), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("schemes", sa.String(length=500), nullable=False),
        sa.Column("updated_at", pgvault.orm.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["vault_id"],
            ["backup_vaults.id"],
            name=op.f("fk_vault_notifications_vault_id_backup_vaults"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("vault_id", name=op.f("pk_vault_notifications")),
    )


def downgrade() -> None:
    op.drop_table("vault_notifications")
    with op.batch_alter_table("recovery_points", schema=None) as batch_op:
        batch_op.drop_index("ix_recovery_points_instance_created")
    op.drop_table("access_epoch")
