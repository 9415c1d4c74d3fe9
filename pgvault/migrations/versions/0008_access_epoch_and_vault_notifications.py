"""access epoch

`access_epoch` holds one row whose value moves whenever principals, revoked tokens, custom
roles or role assignments change; the API caches authentication and authorisation answers
per epoch (pgvault/access_epoch.py).

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-01 02:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0005"
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


def downgrade() -> None:
    op.drop_table("access_epoch")
