"""Every table, gathered for Alembic: importing the domain modules registers their models."""

from __future__ import annotations

from sqlalchemy import MetaData

from pgvault import (  # noqa: F401  (imported for their tables)
    access_epoch,
    audit,
    identity,
    instances,
    jobs,
    leases,
    notifications,
    policies,
    rbac,
    recovery_points,
    replicas,
    restore_claims,
    secrets,
    servers,
    tenancy,
    vaults,
)
from pgvault.orm import Base
from pgvault.storage import accounts  # noqa: F401


def metadata() -> MetaData:
    """Every table of pgvault (for Alembic, and for the session's flush order)."""
    return Base.metadata
