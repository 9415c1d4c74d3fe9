"""The Procrastinate app of pgvault: its connector, and its schema in the metadata database.

One app for both sides: `pgvault serve` defers through it (on the metadata session's own
connection, see `executors.install_deferral`), `pgvault worker` runs its one task.
"""

from __future__ import annotations

from typing import Any

from procrastinate import App, PsycopgConnector
from procrastinate.schema import SchemaManager

from pgvault.config import Settings


def conninfo(settings: Settings) -> str:
    """The metadata URL as libpq takes it (SQLAlchemy's `+psycopg` driver suffix removed)."""
    url = settings.metadata_url
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgres") else url


def app(settings: Settings) -> App:
    """A Procrastinate app on the metadata database (not opened: deferring on a given
    connection needs no pool; the worker opens it)."""
    return App(connector=PsycopgConnector(conninfo=conninfo(settings)))


def schema_sql() -> str:
    """The installed Procrastinate version's full schema (what `procrastinate schema
    --apply` runs); pgvault's migration 0007 applies it on PostgreSQL metadata."""
    return SchemaManager.get_schema()


def apply_schema(driver_connection: Any) -> None:
    """Create Procrastinate's tables and functions unless they exist (idempotent)."""
    cur = driver_connection.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
    row = cur.fetchone()
    if row is not None and row[0]:
        return
    driver_connection.execute(schema_sql())
