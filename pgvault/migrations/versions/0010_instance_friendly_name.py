"""backup instances keep the friendlyName a PUT gave them

Existing instances have none and keep showing `server\\database`.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-01 02:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("backup_instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("friendly_name", sa.String(length=256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("backup_instances", schema=None) as batch_op:
        batch_op.drop_column("friendly_name")
