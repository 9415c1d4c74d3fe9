"""Fidelity guard: a format-2 round trip differs from its source in nothing more than a raw
`pg_dump -Fc | pg_restore` round trip does.

The source is the rich sample database plus objects that stress a split dump: inheritance,
generated, identity and dropped columns, unlogged tables, row-level security, special
floats, ranges and multiranges, text search, XML, TOASTed rows, a sequence never called,
an empty table, large objects. Both round trips go into the same cluster and are compared
on the schema dump, a content hash per table, every sequence's state and every large
object. Restore as database (no owners, no grants, as pgvault restores) and restore as
files (the user's `pg_restore -Fd -j 2`, owners and grants kept) are both checked.
PostgreSQL's own regression database gets the same comparison in
benchmarks/fidelity_regression.py (a few minutes: too heavy for this suite on 2 cores).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgvault.connstr import Credentials
from pgvault.engine import load, pardump, parload, pgtools
from pgvault.engine.manifest import Manifest
from pgvault.storage.backends import Location, local_location
from tests.support.fidelity import content, raw_round_trip, schema
from tests.support.pg import PgCluster, find_bindir
from tests.support.sampledb import build_rich_database, create_sample_roles

EXTRA = r"""
CREATE TABLE app.parent (id int PRIMARY KEY, label text);
CREATE TABLE app.child (extra numeric) INHERITS (app.parent);
INSERT INTO app.parent VALUES (1, 'p');
INSERT INTO app.child VALUES (2, 'c', 2.5);
CREATE TABLE app.shapes (
  id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  gone text,
  w float8, h float8,
  area float8 GENERATED ALWAYS AS (w * h) STORED,
  r int4range, mr int4multirange, doc tsvector, x xml, iv interval, n numeric,
  big text
);
ALTER TABLE app.shapes DROP COLUMN gone;
INSERT INTO app.shapes (w, h, r, mr, doc, x, iv, n, big) VALUES
  ('NaN', 'Infinity', '[1,5)', '{[1,2),[4,9)}', to_tsvector('english', 'the quick foxes'),
   '<a b="1">t</a>', '1 year 2 mons -3 days', 'NaN', repeat('toast me ', 20000)),
  (-0.0, 1e-300, 'empty', '{}', '', '<x/>', '-1 second', 1.000000000000000000001, NULL);
CREATE UNLOGGED TABLE app.scratch (k text PRIMARY KEY, v jsonb);
INSERT INTO app.scratch VALUES ('a', '{"deep": {"x": [1, 2, {"y": null}]}}');
CREATE TABLE app.secret_rows (id int, owner_name text);
ALTER TABLE app.secret_rows ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON app.secret_rows USING (owner_name = current_user);
INSERT INTO app.secret_rows VALUES (1, 'postgres'), (2, 'nobody');
CREATE TABLE app.empty_one (id int);
CREATE SEQUENCE app.not_called START 42;
SELECT setval('app.invoice_no', 77, false);
"""


@pytest.fixture(scope="module")
def point(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PgCluster, Location, Manifest]]:
    cluster = PgCluster.start("fidelity")
    try:
        create_sample_roles(cluster)
        build_rich_database(cluster, "src")
        cluster.execute(EXTRA, dbname="src")
        cluster.execute("VACUUM ANALYZE", dbname="src")
        ep = pgtools.Endpoint(
            "127.0.0.1", cluster.port, Credentials("postgres", cluster.superuser_password)
        )
        store = local_location(tmp_path_factory.mktemp("store")).child("rp")
        manifest = pardump.run(ep, "src", "fidelity", store, "rp", lambda _n: None, jobs=2)
        yield cluster, store, manifest
    finally:
        cluster.stop()


def test_restore_as_database_matches_a_raw_round_trip(
    point: tuple[PgCluster, Location, Manifest],
) -> None:
    cluster, store, manifest = point
    raw, ours = f"raw_{uuid.uuid4().hex[:6]}", f"ours_{uuid.uuid4().hex[:6]}"
    raw_round_trip(cluster, "src", raw, "--no-owner", "--no-acl")
    ep = pgtools.Endpoint(
        "127.0.0.1", cluster.port, Credentials("postgres", cluster.superuser_password)
    )
    load.create_database(ep, ours)
    parload.into_database(ep, ours, store, manifest, lambda _n: None, jobs=2)
    assert content(cluster.admin_dsn(ours)) == content(cluster.admin_dsn(raw))
    assert content(cluster.admin_dsn(ours)) == content(cluster.admin_dsn("src"))
    flags = ("--no-owner", "--no-acl")
    assert schema(cluster, ours, *flags) == schema(cluster, raw, *flags)


def test_restore_as_files_matches_a_raw_round_trip(
    point: tuple[PgCluster, Location, Manifest], tmp_path: Path
) -> None:
    cluster, store, manifest = point
    target = local_location(tmp_path / "container")
    parload.into_files(store, manifest, target, "fid/archive", lambda _n: None)
    raw, ours = f"rawf_{uuid.uuid4().hex[:6]}", f"oursf_{uuid.uuid4().hex[:6]}"
    raw_round_trip(cluster, "src", raw)
    cluster.execute(f'CREATE DATABASE "{ours}"')
    subprocess.run(
        [str(find_bindir() / "pg_restore"), "--exit-on-error", "-Fd", "-j", "2", "-d",
         cluster.admin_dsn(ours), str(tmp_path / "container" / "fid" / "archive")],
        check=True,
        capture_output=True,
    )  # fmt: skip
    assert content(cluster.admin_dsn(ours)) == content(cluster.admin_dsn(raw))
    assert schema(cluster, ours) == schema(cluster, raw)
