"""Fidelity comparison helpers: what a restored database must share with its source.

Used by tests/integration/test_fidelity.py (a rich sample database) and by
benchmarks/fidelity_regression.py (PostgreSQL's own regression database). A database is
summarised as a content hash per table, every sequence's state and every large object
(:func:`content`), plus its schema dump (:func:`schema`); :func:`differences` names what two
summaries disagree on, so a round trip can be judged against a raw `pg_dump -Fc | pg_restore`.
"""

from __future__ import annotations

import difflib
import subprocess
from typing import Any

import psycopg

from tests.support.pg import PgCluster, find_bindir

__all__ = ["content", "differences", "raw_round_trip", "schema", "schema_differences"]

# Random per dump (PostgreSQL 15.14+) or per run: never a difference.
_VOLATILE_LINES = ("-- Dumped", "\\restrict", "\\unrestrict")


def content(dsn: str, *, by_name: bool = False) -> dict[str, Any]:
    """Content hash per table, sequence states and large objects of a database.

    Rows are hashed as their text form (`t::text`: column order counts) or, with *by_name*, as
    `to_jsonb(t)` (keyed by column name), for databases where `pg_dump` itself reorders the
    columns of inheritance children (the regression database): the schema dump still shows
    the order, and the values are compared by name. A table that cannot be read (an
    unpopulated materialized view, say) is summarised by its error message, so the same
    failure on both sides is not a difference.
    """
    row_text = "to_jsonb(t)::text" if by_name else "t::text"
    out: dict[str, Any] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm')"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
            " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')"
        ).fetchall()
        for (table,) in tables:
            try:
                row = conn.execute(
                    f"SELECT count(*), md5(coalesce(string_agg({row_text}, E'\\n'"
                    f" ORDER BY {row_text}), '')) FROM ONLY {table} t"
                ).fetchone()
            except psycopg.Error as exc:
                row = ("error", exc.diag.message_primary or str(exc))
            out[f"table {table}"] = tuple(row) if row is not None else None
        seqs = conn.execute(
            "SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences"
        ).fetchall()
        for (seq,) in seqs:
            row = conn.execute(f"SELECT last_value, is_called FROM {seq}").fetchone()
            out[f"sequence {seq}"] = tuple(row) if row is not None else None
        out["large objects"] = conn.execute(
            "SELECT oid::bigint, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY oid"
        ).fetchall()
    return out


def schema(cluster: PgCluster, db: str, *extra: str) -> str:
    """`pg_dump --schema-only` of *db*, without the lines that differ on every run."""
    dump = subprocess.run(
        [str(find_bindir() / "pg_dump"), "--schema-only", *extra, cluster.admin_dsn(db)],
        capture_output=True,
        text=True,
        check=True,
    )
    return "\n".join(
        line for line in dump.stdout.splitlines() if not line.startswith(_VOLATILE_LINES)
    )


def differences(source: dict[str, Any], copy: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Every key of two :func:`content` summaries whose values differ: key -> (source, copy)."""
    return {
        key: (source.get(key), copy.get(key))
        for key in sorted(source.keys() | copy.keys())
        if source.get(key) != copy.get(key)
    }


def schema_differences(source: str, copy: str) -> list[str]:
    """The changed lines of two :func:`schema` dumps, as `-line` / `+line` (unified diff body)."""
    diff = difflib.unified_diff(source.splitlines(), copy.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def raw_round_trip(
    cluster: PgCluster, source: str, db: str, *restore_flags: str, exit_on_error: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """`pg_dump -Fc source | pg_restore [flags] -d db` into a new database *db*.

    With *exit_on_error* (the tests) any error raises; without it (the regression database,
    where a raw restore may report errors of its own) the finished process is returned so the
    caller can record its exit status and stderr.
    """
    cluster.execute(f'CREATE DATABASE "{db}"')
    dump = subprocess.Popen(
        [str(find_bindir() / "pg_dump"), "-Fc", cluster.admin_dsn(source)], stdout=subprocess.PIPE
    )
    flags = ["--exit-on-error"] if exit_on_error else []
    restored = subprocess.run(
        [str(find_bindir() / "pg_restore"), *flags, *restore_flags, "-d", cluster.admin_dsn(db)],
        stdin=dump.stdout,
        check=exit_on_error,
        capture_output=True,
    )
    assert dump.stdout is not None
    dump.stdout.close()
    if dump.wait() != 0:
        raise RuntimeError(f"pg_dump -Fc {source} exited with {dump.returncode}")
    return restored
