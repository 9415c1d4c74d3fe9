"""A "rich" sample database and tools to compare two databases.

:func:`build_rich_database` creates a database that exercises the parts of
PostgreSQL a backup tool tends to get wrong: extensions, non-ASCII
identifiers, partitioning, identity columns and sequences, enums/domains,
odd column types (bytea with NUL bytes, arrays, hstore, jsonb ...), large
objects, materialized views, triggers, views, non-default owners and grants.

:func:`snapshot` captures a comparable description of a database;
:func:`assert_same_data` and :func:`assert_same_permissions` compare two
snapshots and fail with a message naming every differing object.

Conventions of :func:`snapshot`:

* "user schemas" are all schemas except ``pg_catalog``,
  ``information_schema``, ``pg_toast*`` and ``pg_temp*``;
* objects that belong to an extension are ignored (the set of extensions
  is compared instead);
* partitioned tables are compared **leaf by leaf** (every ``relkind='r'``
  table, partitions included; the partitioned parents hold no rows), so
  rows landing in a different partition count as a difference;
* a NULL ACL is normalised to ``acldefault(...)`` for the object's owner and
  aclitems are sorted, so "default privileges" written explicitly or
  implicitly compare equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from .pg import PgCluster

__all__ = [
    "APP_OWNER",
    "APP_READER",
    "APP_READER_PASSWORD",
    "DatabaseSnapshot",
    "assert_same_data",
    "assert_same_permissions",
    "assert_same_schema",
    "build_rich_database",
    "create_sample_roles",
    "snapshot",
    "table_count",
]

APP_OWNER = "app_owner"
APP_READER = "app_reader"
APP_READER_PASSWORD = "reader-Pa55word"

#: Schema and table with non-ASCII names created by :func:`build_rich_database`.
UNICODE_SCHEMA = "données"
UNICODE_TABLE = "Ünïcode tåble"


def create_sample_roles(cluster: PgCluster) -> None:
    """Create (or reset) the roles the sample database refers to.

    Idempotent, so it can also be run on a restore target to make "the
    source's roles exist there": ``app_owner`` (NOLOGIN, owns most objects)
    and ``app_reader`` (LOGIN with :data:`APP_READER_PASSWORD`).
    """
    for name, login, password in (
        (APP_OWNER, False, None),
        (APP_READER, True, APP_READER_PASSWORD),
    ):
        if not cluster.role_exists(name):
            cluster.create_role(name, password, login=login)
        else:
            stmt = sql.SQL("ALTER ROLE {} WITH {} NOSUPERUSER NOCREATEDB PASSWORD {}").format(
                sql.Identifier(name),
                sql.SQL("LOGIN" if login else "NOLOGIN"),
                sql.Literal(password),
            )
            cluster.execute(stmt)


_SCRIPT = r"""
CREATE EXTENSION pgcrypto;
CREATE EXTENSION hstore;
CREATE EXTENSION citext;

CREATE SCHEMA app AUTHORIZATION app_owner;
CREATE SCHEMA "données" AUTHORIZATION app_owner;
CREATE SCHEMA audit;                       -- stays owned by postgres
GRANT USAGE ON SCHEMA app TO app_reader;

-- audit trail filled by a trigger (function owned by postgres, SECURITY DEFINER)
CREATE TABLE audit.log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name text NOT NULL,
    row_id     bigint NOT NULL,
    row_email  text
);
CREATE FUNCTION audit.log_customer_insert() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
BEGIN
    INSERT INTO audit.log (table_name, row_id, row_email)
    VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, NEW.id, NEW.email::text);
    RETURN NEW;
END
$fn$;
REVOKE EXECUTE ON FUNCTION audit.log_customer_insert() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.log_customer_insert() TO app_owner;
GRANT USAGE ON SCHEMA audit TO app_owner;

SET ROLE app_owner;

CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy', 'ecstatic');
CREATE DOMAIN app.positive_int AS integer CONSTRAINT positive CHECK (VALUE > 0);

CREATE SEQUENCE app.invoice_no START 1000;
SELECT setval('app.invoice_no', 4242, true);
CREATE SEQUENCE app.never_used;
SELECT setval('app.never_used', 77, false);

CREATE TABLE app.customers (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email       citext NOT NULL UNIQUE,
    name        text,
    mood        app.mood,
    score       app.positive_int,
    balance     numeric(16, 4),
    created_at  timestamptz NOT NULL,
    external_id uuid NOT NULL DEFAULT gen_random_uuid(),
    tags        text[],
    lucky       int[],
    attrs       hstore,
    profile     jsonb,
    avatar      bytea
);
CREATE TRIGGER customers_audit AFTER INSERT ON app.customers
    FOR EACH ROW EXECUTE FUNCTION audit.log_customer_insert();

INSERT INTO app.customers
    (email, name, mood, score, balance, created_at, tags, lucky, attrs, profile, avatar)
SELECT
    'User' || g || '@Example.COM',
    CASE WHEN g % 10 = 0 THEN NULL ELSE 'name ' || g || E' with \'quote\' and tab\there' END,
    CASE WHEN g % 7 = 0 THEN NULL
         ELSE (ARRAY['sad', 'ok', 'happy', 'ecstatic']::app.mood[])[1 + g % 4] END,
    CASE WHEN g % 9 = 0 THEN NULL ELSE g END,
    CASE WHEN g % 11 = 0 THEN NULL ELSE round((g * 1234.56789 / 7)::numeric, 4) END,
    timestamptz '2023-01-01 00:00:00+00' + g * interval '1 hour 7 minutes',
    CASE WHEN g % 5 = 0 THEN NULL ELSE ARRAY['t' || g % 3, 'comma,tag', 'quote"tag', NULL] END,
    CASE WHEN g % 6 = 0 THEN '{}'::int[] ELSE ARRAY[g, -g, g * g] END,
    CASE WHEN g % 8 = 0 THEN NULL ELSE hstore(ARRAY['k1', 'k=>2'], ARRAY['v' || g, NULL]) END,
    CASE WHEN g % 4 = 0 THEN NULL
         ELSE jsonb_build_object(
                  'n', g,
                  'nested', jsonb_build_object('arr', jsonb_build_array(1, 'two', null, true)),
                  'unicode', 'Grüße ✓') END,
    CASE WHEN g % 3 = 0 THEN NULL
         WHEN g % 3 = 1 THEN '\x00ff00'::bytea || gen_random_bytes(16)
         ELSE gen_random_bytes(64) END
FROM generate_series(1, 1200) AS g;

-- declaratively partitioned table: 3 range partitions + default
CREATE TABLE app.events (
    id          bigint GENERATED BY DEFAULT AS IDENTITY,
    customer_id bigint NOT NULL REFERENCES app.customers (id),
    happened_at timestamptz NOT NULL,
    kind        text NOT NULL,
    payload     jsonb,
    PRIMARY KEY (id, happened_at)
) PARTITION BY RANGE (happened_at);
CREATE TABLE app.events_2023 PARTITION OF app.events
    FOR VALUES FROM ('2023-01-01 00:00:00+00') TO ('2024-01-01 00:00:00+00');
CREATE TABLE app.events_2024 PARTITION OF app.events
    FOR VALUES FROM ('2024-01-01 00:00:00+00') TO ('2025-01-01 00:00:00+00');
CREATE TABLE app.events_2025 PARTITION OF app.events
    FOR VALUES FROM ('2025-01-01 00:00:00+00') TO ('2026-01-01 00:00:00+00');
CREATE TABLE app.events_default PARTITION OF app.events DEFAULT;

INSERT INTO app.events (customer_id, happened_at, kind, payload)
SELECT 1 + g % 1200,
       timestamptz '2022-07-01 00:00:00+00' + g * interval '11 hours',
       (ARRAY['login', 'logout', 'purchase'])[1 + g % 3],
       CASE WHEN g % 2 = 0 THEN jsonb_build_object('g', g) END
FROM generate_series(1, 4000) AS g;

-- large objects referenced from a table (one ~1 MiB random, one text)
CREATE TABLE app.documents (
    id      int PRIMARY KEY,
    title   text NOT NULL,
    content oid NOT NULL
);
INSERT INTO app.documents VALUES
    (1, 'random megabyte',
     lo_from_bytea(0, (SELECT string_agg(gen_random_bytes(1024), ''::bytea)
                       FROM generate_series(1, 1024)))),
    (2, 'text document',
     lo_from_bytea(0, convert_to(repeat(E'Large object text, ünïcødé ✓\n', 200), 'UTF8')));

CREATE VIEW app.active_customers AS
    SELECT id, email, name FROM app.customers WHERE mood IS DISTINCT FROM 'sad';

CREATE MATERIALIZED VIEW app.customer_event_counts AS
    SELECT c.id AS customer_id, count(e.id) AS events, max(e.happened_at) AS last_event
    FROM app.customers AS c LEFT JOIN app.events AS e ON e.customer_id = c.id
    GROUP BY c.id
WITH DATA;

CREATE TABLE "données"."Ünïcode tåble" (
    id       int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "prénom" text NOT NULL,
    "naïf"   boolean,
    "Größe"  numeric
);
INSERT INTO "données"."Ünïcode tåble" ("prénom", "naïf", "Größe") VALUES
    ('Zoë', true, 1.5), ('Ελληνικά', false, NULL), ('日本語', NULL, -0.001),
    ('emoji 🐘', true, 1e20), (E'line\nbreak and \\backslash', false, 0);

RESET ROLE;

-- an object owned by the reader, and grants that differ from the defaults
CREATE TABLE "données".notes (id int PRIMARY KEY, body text);
ALTER TABLE "données".notes OWNER TO app_reader;
INSERT INTO "données".notes VALUES (1, 'owned by app_reader'), (2, NULL);

GRANT SELECT ON app.customers TO app_reader;
GRANT SELECT ("prénom") ON "données"."Ünïcode tåble" TO app_reader;
GRANT USAGE ON SEQUENCE app.invoice_no TO app_reader;
REVOKE ALL ON TABLE audit.log FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA app GRANT SELECT ON TABLES TO app_reader;
"""


def build_rich_database(cluster: PgCluster, dbname: str) -> None:
    """Create database *dbname* on *cluster* and fill it with sample objects.

    Runs as superuser over the admin socket and calls
    :func:`create_sample_roles` first.  A few thousand rows in total.
    """
    create_sample_roles(cluster)
    cluster.create_database(dbname)
    with psycopg.connect(cluster.admin_dsn(dbname), autocommit=True) as conn:
        with conn.transaction():
            conn.execute(_SCRIPT)
            # Both large objects were created by app_owner.  Give the random one
            # to postgres and let app_reader read the text one.  These commands
            # take a literal oid, not a subquery.
            (random_lo,) = _one(conn, "SELECT content FROM app.documents WHERE id = 1")
            (text_lo,) = _one(conn, "SELECT content FROM app.documents WHERE id = 2")
            conn.execute(
                sql.SQL("ALTER LARGE OBJECT {} OWNER TO postgres").format(
                    sql.Literal(int(random_lo))
                )
            )
            conn.execute(
                sql.SQL("GRANT SELECT ON LARGE OBJECT {} TO {}").format(
                    sql.Literal(int(text_lo)), sql.Identifier(APP_READER)
                )
            )
        conn.execute("ANALYZE")


def _one(conn: psycopg.Connection[tuple[Any, ...]], query: str) -> tuple[Any, ...]:
    row = conn.execute(query).fetchone()
    assert row is not None, query
    return row


# ---------------------------------------------------------------------------
# snapshots

_USER_SCHEMA_FILTER = """
    n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\\_toast%'
    AND n.nspname NOT LIKE 'pg\\_temp\\_%'
"""

_NOT_EXTENSION_MEMBER = """
    NOT EXISTS (SELECT 1 FROM pg_depend d
                WHERE d.classid = {catalog}::regclass AND d.objid = {oid} AND d.deptype = 'e')
"""


def _not_ext(catalog: str, oid: str) -> str:
    return _NOT_EXTENSION_MEMBER.format(catalog=f"'{catalog}'", oid=oid)


def _sorted_acl(expr: str, kind: str, owner: str) -> str:
    """SQL for the sorted aclitems of *expr*, NULL meaning acldefault(kind, owner)."""
    acl = f"coalesce({expr}, acldefault({kind}, {owner}))"
    return f"ARRAY(SELECT x::text FROM unnest({acl}) AS x ORDER BY 1)"


_REL_ACL_KIND = "(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::\"char\""

_RELATIONS = f"""
SELECT n.nspname, c.relname, c.relkind, format('%I.%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm', 'S') AND {_USER_SCHEMA_FILTER} AND {_not_ext("pg_class", "c.oid")}
ORDER BY 1, 2
"""

_OWNERS_AND_ACLS = f"""
SELECT 'schema ' || format('%I', n.nspname), n.nspowner::regrole::text,
       {_sorted_acl("n.nspacl", "'n'", "n.nspowner")}
FROM pg_namespace n WHERE {_USER_SCHEMA_FILTER} AND {_not_ext("pg_namespace", "n.oid")}
UNION ALL
SELECT (CASE c.relkind WHEN 'S' THEN 'sequence ' WHEN 'v' THEN 'view '
        WHEN 'm' THEN 'materialized view ' ELSE 'table ' END)
       || format('%I.%I', n.nspname, c.relname),
       c.relowner::regrole::text,
       {_sorted_acl("c.relacl", _REL_ACL_KIND, "c.relowner")}
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {_USER_SCHEMA_FILTER}
      AND {_not_ext("pg_class", "c.oid")}
UNION ALL
SELECT 'column ' || format('%I.%I.%I', n.nspname, c.relname, a.attname), NULL,
       ARRAY(SELECT x::text FROM unnest(a.attacl) AS x ORDER BY 1)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE a.attacl IS NOT NULL AND a.attnum > 0 AND NOT a.attisdropped AND {_USER_SCHEMA_FILTER}
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text, p.proowner::regrole::text,
       {_sorted_acl("p.proacl", "'f'", "p.proowner")}
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE {_USER_SCHEMA_FILTER} AND {_not_ext("pg_proc", "p.oid")}
UNION ALL
SELECT 'type ' || format('%I.%I', n.nspname, t.typname), t.typowner::regrole::text,
       {_sorted_acl("t.typacl", "'T'", "t.typowner")}
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE {_USER_SCHEMA_FILTER} AND {_not_ext("pg_type", "t.oid")}
      AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
      AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)
UNION ALL
SELECT 'large object ' || m.oid::text, m.lomowner::regrole::text,
       {_sorted_acl("m.lomacl", "'L'", "m.lomowner")}
FROM pg_largeobject_metadata m
UNION ALL
SELECT 'default privileges for role ' || d.defaclrole::regrole::text
       || coalesce(' in schema ' || format('%I', n.nspname), '') || ' on ' || d.defaclobjtype::text,
       NULL, ARRAY(SELECT x::text FROM unnest(d.defaclacl) AS x ORDER BY 1)
FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
"""


_DEFINITIONS = f"""
SELECT 'view ' || format('%I.%I', n.nspname, c.relname), pg_get_viewdef(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('v', 'm') AND {_USER_SCHEMA_FILTER} AND {_not_ext("pg_class", "c.oid")}
UNION ALL
SELECT 'index ' || format('%I.%I', n.nspname, c.relname), pg_get_indexdef(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('i', 'I') AND {_USER_SCHEMA_FILTER} AND {_not_ext("pg_class", "c.oid")}
UNION ALL
SELECT 'constraint ' || format('%I', t.conname) || ' on '
       || coalesce(t.conrelid::regclass::text, t.contypid::regtype::text),
       pg_get_constraintdef(t.oid)
FROM pg_constraint t JOIN pg_namespace n ON n.oid = t.connamespace
WHERE {_USER_SCHEMA_FILTER} AND {_not_ext("pg_constraint", "t.oid")}
UNION ALL
SELECT 'trigger ' || format('%I', g.tgname) || ' on ' || g.tgrelid::regclass::text,
       pg_get_triggerdef(g.oid)
FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT g.tgisinternal AND {_USER_SCHEMA_FILTER}
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text, pg_get_functiondef(p.oid)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE p.prokind IN ('f', 'p') AND {_USER_SCHEMA_FILTER} AND {_not_ext("pg_proc", "p.oid")}
UNION ALL
SELECT 'partition ' || c.oid::regclass::text, pg_get_expr(c.relpartbound, c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relispartition AND {_USER_SCHEMA_FILTER}
UNION ALL
SELECT 'enum ' || e.enumtypid::regtype::text, string_agg(e.enumlabel, ', ' ORDER BY e.enumsortorder)
FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE {_USER_SCHEMA_FILTER} AND {_not_ext("pg_type", "t.oid")}
GROUP BY e.enumtypid
"""


@dataclass(frozen=True)
class DatabaseSnapshot:
    """Comparable description of one database (see module docstring).

    Keys are human-readable object names such as ``table app.customers``.
    """

    dsn_label: str
    #: ``table schema.name`` / ``materialized view schema.name`` -> (row count, md5 of sorted rows)
    relations: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    #: ``sequence schema.name`` -> (last_value, is_called)
    sequences: Mapping[str, tuple[int, bool]] = field(default_factory=dict)
    #: large object oid -> (size in bytes, md5 of content)
    large_objects: Mapping[int, tuple[int, str]] = field(default_factory=dict)
    #: extension name -> version
    extensions: Mapping[str, str] = field(default_factory=dict)
    #: object description -> owner role name
    owners: Mapping[str, str] = field(default_factory=dict)
    #: object description -> sorted aclitems (NULL ACLs normalised to acldefault)
    acls: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: ``view``/``index``/``constraint``/``trigger``/``function``/``partition``/``enum``
    #: description -> definition text
    definitions: Mapping[str, str] = field(default_factory=dict)

    def row_count(self, name: str) -> int:
        """Row count of ``name`` (``"schema.table"``, identifiers quoted as by %I)."""
        for prefix in ("table ", "materialized view "):
            if prefix + name in self.relations:
                return self.relations[prefix + name][0]
        raise KeyError(name)

    @property
    def total_rows(self) -> int:
        """Sum of rows over all tables and materialized views."""
        return sum(count for count, _ in self.relations.values())


def _label(dsn: str) -> str:
    info = conninfo_to_dict(dsn)
    return f"{info.get('host')}:{info.get('port')}/{info.get('dbname')}"


def snapshot(dsn: str) -> DatabaseSnapshot:
    """Capture data and permission facts of the database at *dsn*.

    Connect as a role that can read everything (the superuser, e.g.
    ``cluster.admin_dsn(db)``).  Runs in one REPEATABLE READ transaction.
    """
    relations: dict[str, tuple[int, str]] = {}
    sequences: dict[str, tuple[int, bool]] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET search_path = pg_catalog")
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        conn.autocommit = False
        with conn.transaction():
            for schema, name, relkind, qualified in conn.execute(_RELATIONS).fetchall():
                ident = sql.Identifier(schema, name)
                if relkind == "S":
                    last_value, is_called = _one_composed(
                        conn, sql.SQL("SELECT last_value, is_called FROM {}").format(ident)
                    )
                    sequences[f"sequence {qualified}"] = (int(last_value), bool(is_called))
                    continue
                count, digest = _one_composed(
                    conn,
                    sql.SQL(
                        "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n'"
                        " ORDER BY t::text COLLATE \"C\")), '') FROM {} AS t"
                    ).format(ident),
                )
                kind = "materialized view" if relkind == "m" else "table"
                relations[f"{kind} {qualified}"] = (int(count), str(digest))
            large_objects = {
                int(oid): (int(size), str(digest))
                for oid, size, digest in conn.execute(
                    "SELECT oid, length(lo_get(oid)), md5(lo_get(oid)) FROM pg_largeobject_metadata"
                ).fetchall()
            }
            extensions = {
                str(name): str(version)
                for name, version in conn.execute(
                    "SELECT extname, extversion FROM pg_extension"
                ).fetchall()
            }
            owners: dict[str, str] = {}
            acls: dict[str, tuple[str, ...]] = {}
            for desc, owner, acl in conn.execute(_OWNERS_AND_ACLS).fetchall():
                if owner is not None:  # columns and default ACLs have no owner
                    owners[desc] = owner
                acls[desc] = tuple(acl)
            definitions = {str(k): str(v) for k, v in conn.execute(_DEFINITIONS).fetchall()}
    return DatabaseSnapshot(
        dsn_label=_label(dsn),
        relations=relations,
        sequences=sequences,
        large_objects=large_objects,
        extensions=extensions,
        owners=owners,
        acls=acls,
        definitions=definitions,
    )


def _one_composed(
    conn: psycopg.Connection[tuple[Any, ...]], query: sql.Composed
) -> tuple[Any, ...]:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row


def _diff(
    what: str, a: Mapping[Any, Any], b: Mapping[Any, Any], a_label: str, b_label: str
) -> list[str]:
    problems: list[str] = []
    for key in sorted(set(a) | set(b), key=str):
        name = f"{what}{key}"
        if key not in b:
            problems.append(f"{name}: only in {a_label}")
        elif key not in a:
            problems.append(f"{name}: only in {b_label}")
        elif a[key] != b[key]:
            problems.append(f"{name}: {a[key]!r} ({a_label}) != {b[key]!r} ({b_label})")
    return problems


def _fail(kind: str, a: DatabaseSnapshot, b: DatabaseSnapshot, problems: list[str]) -> None:
    if problems:
        head = (
            f"{kind} differ between a={a.dsn_label} and b={b.dsn_label}"
            f" ({len(problems)} differences):"
        )
        raise AssertionError("\n  ".join([head, *problems]))


def assert_same_data(a: DatabaseSnapshot, b: DatabaseSnapshot) -> None:
    """Fail unless tables, matviews, sequences, large objects and extensions match."""
    la, lb = "a", "b"
    problems = [
        *_diff("", a.relations, b.relations, la, lb),
        *_diff("", a.sequences, b.sequences, la, lb),
        *_diff("large object ", a.large_objects, b.large_objects, la, lb),
        *_diff("extension ", a.extensions, b.extensions, la, lb),
    ]
    _fail("data", a, b, problems)


def assert_same_permissions(a: DatabaseSnapshot, b: DatabaseSnapshot) -> None:
    """Fail unless owners and ACLs of all user-schema objects match."""
    la, lb = "a", "b"
    problems = [
        *(f"owner of {p}" for p in _diff("", a.owners, b.owners, la, lb)),
        *(f"ACL of {p}" for p in _diff("", a.acls, b.acls, la, lb)),
    ]
    _fail("permissions", a, b, problems)


def assert_same_schema(a: DatabaseSnapshot, b: DatabaseSnapshot) -> None:
    """Fail unless views, indexes, constraints, triggers, functions, partition
    bounds and enum labels of the user schemas have the same definitions."""
    _fail("definitions", a, b, _diff("", a.definitions, b.definitions, "a", "b"))


def table_count(dsn: str, table: str, schema: str = "public") -> int:
    """``SELECT count(*)`` of ``schema.table`` (identifiers quoted for you)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
        ).fetchone()
        assert row is not None
        return int(row[0])
