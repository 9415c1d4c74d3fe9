"""Shared fixtures: real PostgreSQL clusters (started once per session, cheap to reuse)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.pg import PgCluster


@pytest.fixture(scope="session")
def pg_source() -> Iterator[PgCluster]:
    """The server databases are backed up from."""
    cluster = PgCluster.start("source")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def pg_target() -> Iterator[PgCluster]:
    """The server restores go to (as a non-superuser with CREATEDB)."""
    cluster = PgCluster.start("target")
    cluster.create_role("restorer", "restorer-pw", createdb=True)
    yield cluster
    cluster.stop()
