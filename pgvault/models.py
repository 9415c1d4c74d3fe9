"""Every table, gathered for Alembic: importing the domain modules registers their models."""

from __future__ import annotations

from sqlalchemy import MetaData

from pgvault import (  # noqa: F401  (imported for their tables)
    audit,
    identity,
    instances,
    jobs,
    leases,
    policies,
    rbac,
    recovery_points,
    secrets,
    servers,
    tenancy,
    vaults,
)
from pgvault.db import Base
from pgvault.storage import accounts  # noqa: F401


def metadata() -> MetaData:
    return Base.metadata
