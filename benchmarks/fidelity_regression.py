"""Fidelity of pgvault's round trips on PostgreSQL's own regression database (issue 12).

One command (see benchmarks/README.md):

    .venv/bin/python benchmarks/fidelity_regression.py [--jobs 2] [--json out.json]

1. Obtains the regression suite of the installed server's Debian source package
   (`apt-get source postgresql-15=<installed version>` through a private deb-src list: the system's
   apt configuration is not touched) and, when the server headers are not installed, the
   `postgresql-server-dev-15` package unpacked (not installed) beside it; compiles `regress.c`
   into `regress.so`. All of it is cached under `.cache/pg-regress/`.
2. Starts a throw-away cluster (tests/support/pg.py) and runs the installed `pg_regress
   --schedule=parallel_schedule` against it, as `make installcheck` does, which leaves the
   `regression` database behind. Failed regression tests are recorded, not fatal.
3. Compares the source database with a raw `pg_dump -Fc | pg_restore` round trip and with
   pgvault's format-2 round trips (backup, then restore as database; and restore as files read
   back by the user's `pg_restore -Fd -j 2`) on per-table content hashes, sequences, large
   objects and the schema dump (tests/support/fidelity.py, as tests/integration/test_fidelity.py).
4. Prints every difference and the verdict: pgvault's differences must be a subset of the raw
   round trip's. Exit status 0 when they are, 1 when not, 2 when the harness failed.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pgvault.connstr import Credentials  # noqa: E402
from pgvault.engine import load, pardump, parload, pgtools  # noqa: E402
from pgvault.storage.backends import local_location  # noqa: E402
from tests.support.fidelity import (  # noqa: E402
    content,
    differences,
    raw_round_trip,
    schema,
    schema_differences,
)
from tests.support.pg import PgCluster, find_bindir  # noqa: E402

CACHE = ROOT / ".cache" / "pg-regress"
SOURCE_PACKAGE = "postgresql-15"
DEV_PACKAGE = "postgresql-server-dev-15"
DEB_SRC = """\
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
"""
NO_OWNER = ("--no-owner", "--no-acl")  # what pgvault's restore as database does


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run *cmd*, raising with its output when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc


def pg_config(flag: str) -> str:
    return run(["pg_config", flag]).stdout.strip()


# -- 1. the regression suite -----------------------------------------------------------------


def _apt_options(cache: Path) -> list[str]:
    """apt options for a private deb-src list, lists dir and archive dir under *cache*."""
    apt = cache / "apt"
    (apt / "parts").mkdir(parents=True, exist_ok=True)
    (apt / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(DEB_SRC, encoding="utf-8")
    return [
        f"-oDir::Etc::SourceList={apt / 'sources.list'}",
        f"-oDir::Etc::SourceParts={apt / 'parts'}",
        f"-oDir::State::Lists={apt / 'lists'}",
        f"-oDir::Cache::archives={apt / 'archives'}",
        "-oDir::Cache::pkgcache=",
        "-oDir::Cache::srcpkgcache=",
    ]


def fetch_suite(cache: Path) -> Path:
    """The `src/test/regress` dir of the installed server's source package (cached)."""
    version = run(["dpkg-query", "-W", "-f=${Version}", SOURCE_PACKAGE]).stdout.strip()
    upstream = version.split("-")[0]
    regress = cache / f"postgresql-{upstream}" / "src" / "test" / "regress"
    if (regress / "parallel_schedule").exists() and (regress.parent.parent / "include").is_dir():
        return regress
    opts = _apt_options(cache)
    log(f"downloading the {SOURCE_PACKAGE} {version} source package")
    run(["apt-get", *opts, "-q", "update"])
    run(["apt-get", *opts, "-q", "source", "--download-only", f"{SOURCE_PACKAGE}={version}"],
        cwd=cache)  # fmt: skip
    tarball = cache / f"{SOURCE_PACKAGE}_{upstream}.orig.tar.bz2"
    run(["tar", "-xjf", str(tarball), "-C", str(cache), "--wildcards",
         f"postgresql-{upstream}/src/test/regress/*", f"postgresql-{upstream}/src/include/*"])  # fmt: skip
    return regress


def server_includes(cache: Path, regress: Path) -> list[Path]:
    """Header dirs for regress.c: the installed version's own headers from its source tree, then
    the generated ones (pg_config.h, catalog/*_d.h, ...) from the server-dev package.

    The source tree comes first because the dev package may be a newer minor release whose
    headers do not match the installed server (15.20 made DatumGetHeapTupleHeader a function
    that the 15.18 server does not export)."""
    own = regress.parent.parent / "include"
    installed = Path(pg_config("--includedir-server"))
    if (installed / "postgres.h").exists():
        return [own, installed, installed.parent.parent / "internal"]
    unpacked = cache / "dev" / "usr" / "include" / "postgresql"
    if not (unpacked / "15" / "server" / "postgres.h").exists():
        log(f"downloading {DEV_PACKAGE} (unpacked into the cache, not installed)")
        debs = cache / "deb"
        debs.mkdir(exist_ok=True)
        run(["apt-get", "-q", "download", DEV_PACKAGE], cwd=debs)
        deb = sorted(debs.glob(f"{DEV_PACKAGE}_*.deb"))[-1]
        run(["dpkg-deb", "-x", str(deb), str(cache / "dev")])
    return [own, unpacked / "15" / "server", unpacked / "internal"]


def build_libs(cache: Path, regress: Path) -> Path:
    """A dir with regress.so (compiled here) plus contrib's autoinc.so and refint.so."""
    libdir = cache / "lib"
    libdir.mkdir(exist_ok=True)
    target = libdir / "regress.so"
    if not target.exists():
        includes = [f"-I{path}" for path in server_includes(cache, regress)]
        log("compiling regress.c")
        run(["gcc", "-O2", "-fPIC", "-shared", "-fno-strict-aliasing", "-fwrapv",
             "-fexcess-precision=standard", "-Werror=implicit-function-declaration", *includes, "-o", str(target),
             str(regress / "regress.c")])  # fmt: skip
    for name in ("autoinc.so", "refint.so"):  # triggers.sql loads them from the same dir
        link = libdir / name
        if not link.exists():
            link.symlink_to(Path(pg_config("--pkglibdir")) / name)
    return libdir


# -- 2. the regression database ----------------------------------------------------------------


@dataclass
class RegressRun:
    seconds: float
    summary: str
    failed: list[str]


def build_regression(cluster: PgCluster, regress: Path, libdir: Path) -> RegressRun:
    """`make installcheck` against *cluster*: leaves the `regression` database behind."""
    out = Path(tempfile.mkdtemp(prefix="pgvault-regress-out-"))
    (out / "results").mkdir()
    for path in (out, out / "results"):  # the server writes COPY ... TO files there
        path.chmod(0o777)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)
    pg_regress = Path(pg_config("--pgxs")).parent.parent / "test/regress/pg_regress"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    started = time.monotonic()
    proc = subprocess.run(
        [str(pg_regress), f"--inputdir={regress}", f"--outputdir={out}",
         f"--bindir={find_bindir()}", f"--dlpath={libdir}", f"--host={cluster.socket_dir}",
         f"--port={cluster.port}", "--user=postgres", "--max-concurrent-tests=20",
         f"--schedule={regress / 'parallel_schedule'}"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    seconds = time.monotonic() - started
    lines = proc.stdout.splitlines()
    failed = [re.split(r"\s+\.\.\.", ln.strip())[0].split()[-1] for ln in lines if "FAILED" in ln]
    summary = next((ln.strip() for ln in lines if re.search(r"tests? (passed|failed)", ln)), "")
    diffs = out / "regression.diffs"
    if diffs.exists():
        shutil.copy(diffs, CACHE / "last-regression.diffs")
    shutil.rmtree(out, ignore_errors=True)
    if not cluster.database_exists("regression"):
        raise RuntimeError(f"pg_regress did not leave a regression database:\n{proc.stdout}")
    return RegressRun(seconds, summary or f"pg_regress exited {proc.returncode}", failed)


# -- 3. the round trips ------------------------------------------------------------------------


@dataclass
class Copy:
    """One round trip of the regression database and what it differs in from the source."""

    name: str
    seconds: float = 0.0
    error: str = ""
    restore_errors: list[str] = field(default_factory=list)
    content: dict[str, Any] = field(default_factory=dict)
    schema: list[str] = field(default_factory=list)


def _errors(stderr: bytes | str) -> list[str]:
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    return [ln for ln in text.splitlines() if "error:" in ln or ln.startswith("Command was:")]


def _judge(
    cluster: PgCluster,
    copy: Copy,
    db: str,
    src: dict[str, Any],
    src_schema: str,
    flags: tuple[str, ...],
) -> None:
    diff = differences(src, content(cluster.admin_dsn(db), by_name=True))
    copy.content = {key: [repr(a), repr(b)] for key, (a, b) in diff.items()}
    copy.schema = schema_differences(src_schema, schema(cluster, db, *flags))


def _raw(
    cluster: PgCluster, name: str, flags: tuple[str, ...], src: dict[str, Any], sch: str
) -> Copy:
    copy, db = Copy(name), f"raw_{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    proc = raw_round_trip(cluster, "regression", db, *flags, exit_on_error=False)
    copy.seconds = time.monotonic() - started
    copy.restore_errors = _errors(proc.stderr)
    _judge(cluster, copy, db, src, sch, flags)
    return copy


def _ours_database(
    cluster: PgCluster, ep: pgtools.Endpoint, store: Any, manifest: Any, jobs: int,
    src: dict[str, Any], sch: str,
) -> Copy:  # fmt: skip
    copy, db = Copy("pgvault restore as database"), f"ours_{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    try:
        load.create_database(ep, db)
        parload.into_database(ep, db, store, manifest, lambda _n: None, jobs=jobs)
    except Exception as exc:
        copy.error = f"{type(exc).__name__}: {exc}"
    copy.seconds = time.monotonic() - started
    _judge(cluster, copy, db, src, sch, NO_OWNER)
    return copy


def _ours_files(
    cluster: PgCluster, store: Any, manifest: Any, jobs: int, src: dict[str, Any], sch: str
) -> Copy:
    copy, db = Copy("pgvault restore as files + pg_restore -Fd"), f"oursf_{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pgvault-fid-files-") as tmp:
        try:
            parload.into_files(store, manifest, local_location(Path(tmp)), "fid/archive",
                               lambda _n: None)  # fmt: skip
            cluster.execute(f'CREATE DATABASE "{db}"')
            proc = subprocess.run(
                [str(find_bindir() / "pg_restore"), "-Fd", "-j", str(jobs), "-d",
                 cluster.admin_dsn(db), str(Path(tmp) / "fid" / "archive")],
                capture_output=True, check=False,
            )  # fmt: skip
            copy.restore_errors = _errors(proc.stderr)
        except Exception as exc:
            copy.error = f"{type(exc).__name__}: {exc}"
    copy.seconds = time.monotonic() - started
    if cluster.database_exists(db):
        _judge(cluster, copy, db, src, sch, ())
    return copy


def round_trips(
    cluster: PgCluster, jobs: int, backup_seconds: list[float], stats: dict[str, Any]
) -> list[Copy]:
    src = content(cluster.admin_dsn("regression"), by_name=True)
    src_schema = {flags: schema(cluster, "regression", *flags) for flags in (NO_OWNER, ())}
    stats.update(
        tables=sum(key.startswith("table ") for key in src),
        sequences=sum(key.startswith("sequence ") for key in src),
        large_objects=len(src["large objects"]),
        rows=sum(v[0] for k, v in src.items() if k.startswith("table ") and isinstance(v[0], int)),
        unreadable=[k for k, v in src.items() if k.startswith("table ") and v[0] == "error"],
    )
    log(f"source: {stats}")
    copies = [_raw(cluster, "raw pg_dump -Fc | pg_restore --no-owner --no-acl", NO_OWNER, src,
                   src_schema[NO_OWNER])]  # fmt: skip
    log(f"{copies[-1].name}: {copies[-1].seconds:.1f} s")
    ep = pgtools.Endpoint(
        "127.0.0.1", cluster.port, Credentials("postgres", cluster.superuser_password)
    )
    with tempfile.TemporaryDirectory(prefix="pgvault-fid-store-") as tmp:
        store = local_location(Path(tmp)).child("rp")
        started = time.monotonic()
        manifest = pardump.run(
            ep, "regression", "fidelity", store, "rp", lambda _n: None, jobs=jobs
        )
        backup_seconds.append(time.monotonic() - started)
        log(f"pgvault backup: {backup_seconds[0]:.1f} s")
        copies.append(_ours_database(cluster, ep, store, manifest, jobs, src, src_schema[NO_OWNER]))
        log(f"{copies[-1].name}: {copies[-1].seconds:.1f} s")
        copies.append(_raw(cluster, "raw pg_dump -Fc | pg_restore", (), src, src_schema[()]))
        log(f"{copies[-1].name}: {copies[-1].seconds:.1f} s")
        copies.append(_ours_files(cluster, store, manifest, jobs, src, src_schema[()]))
        log(f"{copies[-1].name}: {copies[-1].seconds:.1f} s")
    return copies


def subset(ours: Copy, raw: Copy) -> list[str]:
    """What *ours* differs in from the source that *raw* does not (empty: the guard holds)."""
    extra = [
        f"content {key}: {val}" for key, val in ours.content.items() if raw.content.get(key) != val
    ]
    raw_lines = set(raw.schema)
    extra += [f"schema {line}" for line in ours.schema if line not in raw_lines]
    if ours.error:
        extra.append(f"failed: {ours.error}")
    raw_errors = {re.sub(r"\b(raw|ours|oursf)_[0-9a-f]{6}\b", "DB", e) for e in raw.restore_errors}
    extra += [f"restore {e}" for e in ours.restore_errors
              if re.sub(r"\b(raw|ours|oursf)_[0-9a-f]{6}\b", "DB", e) not in raw_errors]  # fmt: skip
    return extra


# -- 4. report ---------------------------------------------------------------------------------


def _show(title: str, items: list[str], limit: int = 40) -> None:
    print(f"  {title}: {len(items)}")
    for item in items[:limit]:
        print(f"    {item[:200]}")
    if len(items) > limit:
        print(f"    ... {len(items) - limit} more (see --json)")


def report(
    regress: RegressRun, stats: dict[str, Any], copies: list[Copy], backup: float, total: float
) -> list[str]:
    print("\n== PostgreSQL regression database: fidelity of round trips ==")
    print(
        f"pg_regress: {regress.summary} in {regress.seconds:.0f} s; failed: {regress.failed or 'none'}"
    )
    print(
        f"source database: {stats['tables']} tables ({stats['rows']} rows; unreadable, compared by"
        f" error: {len(stats['unreadable'])}), {stats['sequences']} sequences,"
        f" {stats['large_objects']} large objects"
    )
    print(f"pgvault backup: {backup:.1f} s")
    for copy in copies:
        print(
            f"\n{copy.name} ({copy.seconds:.1f} s){' FAILED: ' + copy.error if copy.error else ''}"
        )
        _show("restore errors", copy.restore_errors)
        _show("content differences", [f"{k}: {v[0]} -> {v[1]}" for k, v in copy.content.items()])
        _show("schema dump lines differing", copy.schema)
    verdicts: list[str] = []
    for ours, raw in ((copies[1], copies[0]), (copies[3], copies[2])):
        extra = subset(ours, raw)
        verdicts += [f"{ours.name}: {line}" for line in extra]
        state = "OK (subset of the raw round trip's)" if not extra else "NOT a subset"
        print(f"\nverdict {ours.name}: {state}")
        _show("differences the raw round trip does not have", extra)
    print(f"\ntotal {total:.0f} s")
    return verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=2, help="pgvault and pg_restore parallelism")
    parser.add_argument("--json", type=Path, help="write the full result here")
    args = parser.parse_args()
    started = time.monotonic()
    CACHE.mkdir(parents=True, exist_ok=True)
    try:
        regress_dir = fetch_suite(CACHE)
        libdir = build_libs(CACHE, regress_dir)
        cluster = PgCluster.start("fidelity-regression")
    except Exception as exc:
        print(f"harness failed: {exc}", file=sys.stderr)
        return 2
    try:
        log(f"running pg_regress (parallel_schedule) against port {cluster.port}")
        regress = build_regression(cluster, regress_dir, libdir)
        log(f"pg_regress: {regress.summary} ({regress.seconds:.0f} s)")
        cluster.execute("VACUUM ANALYZE", dbname="regression")
        backup: list[float] = []
        stats: dict[str, Any] = {}
        copies = round_trips(cluster, args.jobs, backup, stats)
        verdicts = report(regress, stats, copies, backup[0], time.monotonic() - started)
        if args.json:
            args.json.write_text(json.dumps({
                "regress": regress.__dict__, "source": stats, "backup_seconds": backup[0],
                "copies": [c.__dict__ for c in copies], "not_in_raw": verdicts,
                "seconds": time.monotonic() - started}, indent=2), encoding="utf-8")  # fmt: skip
        return 1 if verdicts else 0
    except Exception as exc:
        print(f"harness failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
