"""Build the ``bench`` database: the "wide" shape of perf-baseline.md, scaled to a size.

Compressibility drives every number here (gzip and zstd time, stored size), so the data must
look like real rows: hashes, words drawn from a small vocabulary mixed with numbers, jsonb,
random bytes and large objects. pgbench's blank-padded filler would compress ~50x and flatter
every compressor. All rows are generated server-side with generate_series, which is fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from .cluster import Cluster

MB = 1_000_000
PILOT_ROWS = 20_000
PHRASES = 2048  # three per row plus numbers: zstd -1 gets ~37 % of a -Z0 dump (baseline 35 %)
LO_SHARE = 0.10  # baseline wide DB: 4 x 10 MB of large objects in 422 MiB
LO_CAP = 40 * MB
SMALL_SHARE = 0.05  # the second, smaller table

_VOCABULARY_TEXT = """
account active address after agent alert amount annual apply archive audit balance batch
before billing branch budget cancel capacity card cargo change check claim client close
cluster code column commit contract copy credit customer cycle daily damage data debit delay
delivery deposit device discount dispatch draft due east entry error estimate event export
failed fee field file final forecast freight fund gateway green ground hold import index
invoice item journal label ledger limit line load local lock margin market member merge
meter method monthly north notice number offer open order origin owner package paid parcel
partner payment pending period plan policy price primary profile quarter queue quota rate
receipt record refund region release remote report request reserve retail return review
route sales schedule sector service session shipment signal source south status stock store
supplier support tax terminal ticket token total trade transfer update usage vendor verified
volume warehouse weekly west window yearly zone
"""
VOCABULARY = _VOCABULARY_TEXT.split()

STATUSES = ["new", "active", "pending", "suspended", "closed"]
REGIONS = ["eastus", "westus", "northeurope", "westeurope", "southeastasia", "brazilsouth"]


@dataclass
class DatasetInfo:
    """What was built, for the report (and to verify restores against)."""

    database_bytes: int
    wide_rows: int
    small_rows: int
    large_objects: int
    avg_body_chars: float


# Short phrases of 4-9 distinct vocabulary words; rows are stitched from three of them.
# (One statement per entry: psycopg binds parameters server-side, one statement at a time;
# mod() instead of the % operator keeps the SQL free of psycopg's placeholder escaping.)
PHRASES_SQL = [
    """CREATE TEMP TABLE vocab AS
       SELECT i::int AS i, w FROM unnest(%(vocab)s::text[]) WITH ORDINALITY AS t(w, i)""",
    f"""CREATE TEMP TABLE phrases AS
        SELECT p.id, (SELECT string_agg(v.w, ' ')
                      FROM (SELECT w FROM vocab ORDER BY random() LIMIT 4 + mod(p.id, 6)) v) AS p
        FROM generate_series(0, {PHRASES - 1}) AS p(id)""",
    "CREATE UNIQUE INDEX ON phrases (id)",
    "ANALYZE phrases",
]


WIDE_DDL = """
    CREATE TABLE wide (
        id          bigint      NOT NULL,
        created_at  timestamptz NOT NULL,
        digest      text        NOT NULL,
        body        text        NOT NULL,
        attrs       jsonb       NOT NULL,
        payload     bytea       NOT NULL
    )
"""

# Random indexes are drawn in a subquery so the joins to phrases are plain hash joins.
WIDE_INSERT = f"""
    INSERT INTO wide
    SELECT s.g,
           timestamptz '2024-01-01 00:00:00+00' + s.g * interval '13 seconds'
               + (s.f * 600) * interval '1 second',
           md5(s.g::text),
           a.p || ' ' || (s.f * 100000)::int || ' ' || b.p || ' ref ' || s.g || '/'
               || s.r1 || ' ' || c.p,
           jsonb_build_object(
               'user_id', 1000 + (s.f * 250000)::int,
               'status', (%(statuses)s::text[])[1 + mod(s.r1, 5)],
               'score', round((s.f * 1000)::numeric, 2),
               'tags', jsonb_build_array(split_part(a.p, ' ', 1), split_part(c.p, ' ', 2)),
               'region', (%(regions)s::text[])[1 + mod(s.r2, 6)],
               'verified', mod(s.r3, 3) = 0),
           decode(md5(random()::text) || md5(random()::text)
                  || md5(random()::text) || md5(random()::text), 'hex')
    FROM (SELECT g,
                 (random() * {PHRASES - 1})::int AS r1,
                 (random() * {PHRASES - 1})::int AS r2,
                 (random() * {PHRASES - 1})::int AS r3,
                 random() AS f
          FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g) s
    JOIN phrases a ON a.id = s.r1
    JOIN phrases b ON b.id = s.r2
    JOIN phrases c ON c.id = s.r3
"""

SMALL_DDL = """
    CREATE TABLE accounts (
        id          integer PRIMARY KEY,
        name        text        NOT NULL,
        email       text        NOT NULL,
        balance     numeric(12, 2) NOT NULL,
        region      text        NOT NULL,
        opened_on   date        NOT NULL,
        note        text
    )
"""

SMALL_INSERT = """
    INSERT INTO accounts
    SELECT g,
           initcap(split_part(p.p, ' ', 1)) || ' ' || initcap(split_part(p.p, ' ', 2)) || ' ' || g,
           'user' || g || '@' || split_part(p.p, ' ', 3) || '.example.com',
           round((random() * 100000)::numeric, 2),
           (%(regions)s::text[])[1 + mod(g, 6)],
           date '2015-01-01' + (random() * 3650)::int,
           CASE WHEN mod(g, 4) = 0 THEN NULL ELSE p.p END
    FROM generate_series(1, %(rows)s) AS g
    JOIN phrases p ON p.id = mod((g * 7919), {phrases})
""".replace("{phrases}", str(PHRASES))

LO_RANDOM_SQL = """
    SELECT lo_from_bytea(0, (
        SELECT string_agg(decode(md5(random()::text || g), 'hex'), ''::bytea)
        FROM generate_series(1, %(bytes)s / 16) AS g))
"""

LO_TEXT_SQL = """
    SELECT lo_from_bytea(0, substring(convert_to((
        SELECT string_agg(p.p || ' ' || s.g || ' ' || (random() * 1000)::int, E'\\n')
        FROM (SELECT g, (random() * {last})::int AS r
              FROM generate_series(1, %(bytes)s / 40) AS g) s
        JOIN phrases p ON p.id = s.r), 'UTF8') FOR %(bytes)s))
""".replace("{last}", str(PHRASES - 1))


def _scalar(conn: psycopg.Connection[tuple[Any, ...]], sql: str, params: Any = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def _insert_wide(conn: psycopg.Connection[tuple[Any, ...]], first: int, last: int) -> None:
    params = {"first": first, "last": last, "statuses": STATUSES, "regions": REGIONS}
    conn.execute(WIDE_INSERT, params)


def _fill_wide(conn: psycopg.Connection[tuple[Any, ...]], target_bytes: int) -> int:
    """Insert a pilot batch, measure bytes per row on disk, then insert the rest in one go.

    Self-calibrating instead of a fixed bytes-per-row guess, so --size-mb holds on any
    PostgreSQL build. 4 % is added for the created_at index built afterwards.
    """
    conn.execute(WIDE_DDL)
    _insert_wide(conn, 1, PILOT_ROWS)
    per_row = _scalar(conn, "SELECT pg_relation_size('wide')") / PILOT_ROWS * 1.04
    rows = max(PILOT_ROWS, int(target_bytes / per_row))
    if rows > PILOT_ROWS:
        _insert_wide(conn, PILOT_ROWS + 1, rows)
    conn.execute("CREATE INDEX wide_created_at_idx ON wide (created_at)")
    return rows


def _large_objects(conn: psycopg.Connection[tuple[Any, ...]], total_bytes: int) -> int:
    """Two random (incompressible) and two text large objects, as in the baseline.

    Random picks are drawn in a subquery: a volatile expression in a join qual would be
    re-evaluated per inner row, matching a random number of phrases (often none).
    """
    each = max(64 * 1024, total_bytes // 4)
    for sql in (LO_RANDOM_SQL, LO_RANDOM_SQL, LO_TEXT_SQL, LO_TEXT_SQL):
        conn.execute(sql, {"bytes": each})
    return int(_scalar(conn, "SELECT count(*) FROM pg_largeobject_metadata"))


def build(cluster: Cluster, size_mb: int, log: Callable[[str], None]) -> DatasetInfo:
    """Create database ``bench`` of about size_mb MB (10^6 B), vacuumed and checkpointed.

    VACUUM sets hint bits and the visibility map now, so the first measured dump does not pay
    for writing them; CHECKPOINT flushes the load so it does not bleed into the timings.
    """
    with cluster.connect() as admin:
        admin.execute("DROP DATABASE IF EXISTS bench WITH (FORCE)")
        admin.execute("CREATE DATABASE bench")
    target = size_mb * MB
    with cluster.connect("bench") as conn:
        base = _scalar(conn, "SELECT pg_database_size(current_database())")
        lo_bytes = min(LO_CAP, int(target * LO_SHARE))
        small_bytes = int(target * SMALL_SHARE)
        wide_bytes = max(target - base - lo_bytes - small_bytes, 1)
        for sql in PHRASES_SQL:
            conn.execute(sql, {"vocab": VOCABULARY} if "%(vocab)s" in sql else None)
        log(f"  wide table: ~{wide_bytes / MB:.0f} MB")
        wide_rows = _fill_wide(conn, wide_bytes)
        small_rows = max(1000, small_bytes // 150)
        log(f"  accounts table: {small_rows:,} rows; large objects: 4 x {lo_bytes / 4 / MB:.1f} MB")
        conn.execute(SMALL_DDL)
        conn.execute(SMALL_INSERT, {"rows": small_rows, "regions": REGIONS})
        los = _large_objects(conn, lo_bytes)
        avg_body = float(_scalar(conn, "SELECT avg(length(body)) FROM wide"))
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")
    return DatasetInfo(
        database_bytes=cluster.database_size("bench"),
        wide_rows=wide_rows,
        small_rows=small_rows,
        large_objects=los,
        avg_body_chars=avg_body,
    )


def verify(cluster: Cluster, dbname: str, expected: DatasetInfo) -> str | None:
    """Row and large-object counts of a restored database; None if they match, else why not."""
    with cluster.connect(dbname) as conn:
        wide = _scalar(conn, "SELECT count(*) FROM wide")
        small = _scalar(conn, "SELECT count(*) FROM accounts")
        los = _scalar(conn, "SELECT count(*) FROM pg_largeobject_metadata")
        idx = _scalar(conn, "SELECT count(*) FROM pg_indexes WHERE tablename = 'wide'")
    got = (wide, small, los, idx)
    want = (expected.wide_rows, expected.small_rows, expected.large_objects, 1)
    if got != want:
        return f"{dbname}: (wide, accounts, large objects, wide indexes) = {got}, expected {want}"
    return None
