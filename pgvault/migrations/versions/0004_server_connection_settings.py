"""server connection settings (sslmode, root certificate, password exchange); audit details

Existing servers get the defaults (sslmode prefer, no root certificate, scram-sha-256);
existing audit rows have no details.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 22:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sslmode", sa.String(length=16), nullable=False, server_default="prefer")
        )
        batch_op.add_column(sa.Column("ssl_root_cert", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "password_authentication",
                sa.String(length=16),
                nullable=False,
                server_default="scram-sha-256",
            )
        )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("details", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("details")
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.drop_column("password_authentication")
        batch_op.drop_column("ssl_root_cert")
        batch_op.drop_column("sslmode")
