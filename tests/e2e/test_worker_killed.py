"""`kill -9` of `pgvault serve` in the middle of a backup, then a restart on the same home.

The restarted service must fail the abandoned job with `WorkerLost`, expose no
recovery point, leave no object of the half-written point in the datastore, and
take the next backup normally.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import HOST, PgvaultServer, superuser_connstr
from tests.support.pg import PgCluster

REGION = "eastus"
VAULT = "v1"
INSTANCE = "big1"
BIG_DB = "big"
ROWS = 3_000  # x 1 MiB


@pytest.fixture(scope="module")
def big_source() -> Iterator[PgCluster]:
    """A cluster whose `big` database takes seconds to dump, yet is quick to build.

    3,000 rows of 1 MiB text each: lz4 TOAST keeps the table at ~25 MB on disk, but
    pg_dump streams ~3 GB through pgvault, so the backup is still running when the
    test kills the service.
    """
    cluster = PgCluster.start("e2e-big")
    try:
        cluster.create_database(BIG_DB)
        compression = "lz4"
        try:
            cluster.execute("CREATE TABLE probe (t text COMPRESSION lz4)", dbname=BIG_DB)
            cluster.execute("DROP TABLE probe", dbname=BIG_DB)
        except psycopg.Error:  # server built without lz4: pglz is slower but works
            compression = "pglz"
        cluster.execute(
            f"CREATE TABLE filler (id int PRIMARY KEY, payload text COMPRESSION {compression});"
            " INSERT INTO filler SELECT g, repeat(md5(g::text), 32768)"
            f" FROM generate_series(1, {ROWS}) AS g",
            dbname=BIG_DB,
        )
        yield cluster
    finally:
        cluster.stop()


def _children(pid: int) -> list[int]:
    """Pids whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            # "pid (comm) state ppid ..." -- comm may hold spaces, so split after ')'.
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """Running (a zombie counts as dead: it only waits to be reaped)."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _job(server: PgvaultServer, job_id: str) -> Any:
    return server.cli_json("job", "show", job_id, "--vault-name", VAULT)


def _files_under(path: Path) -> list[str]:
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if not p.is_dir())


def test_killed_worker_fails_job_and_leaves_nothing(
    pgvault_server: PgvaultServer, big_source: PgCluster
) -> None:
    srv = pgvault_server
    srv.cli("server", "add", "--name", "big", "--host", HOST, "--port", str(big_source.port),
            "--region", REGION)  # fmt: skip
    srv.cli("keyvault", "create", "--name", "kv1", "--region", REGION)
    secret = srv.cli_json(
        "keyvault", "secret", "set", "--vault-name", "kv1", "--name", "bigpw",
        input=superuser_connstr(big_source, BIG_DB),
    )["properties"]["secretUri"]  # fmt: skip
    vault = srv.cli_json("vault", "create", "--name", VAULT, "--region", REGION)
    srv.cli("policy", "create", "--vault-name", VAULT, "--name", "weekly")
    # The vault's identity reads the server and the secret: granted on the resource group.
    group = vault["id"].split("/providers/", 1)[0]
    for role in ("Reader", "Key Vault Secrets User"):
        assignment = srv.grant(f"vault:{VAULT}", role, group)
        assert assignment["properties"]["principalId"] == vault["identity"]["principalId"]
    srv.cli("instance", "create", "--vault-name", VAULT, "--server", "big", "--database", BIG_DB,
            "--policy", "weekly", "--secret", secret, "--name", INSTANCE)  # fmt: skip

    started = srv.cli_json("backup", "now", "--vault-name", VAULT, "--instance", INSTANCE)
    job_id = started["name"]
    assert started["properties"]["status"] == "InProgress"

    # Wait until data is flowing (bytesDone > 0), polling the job through the CLI.
    deadline = time.monotonic() + 30
    while True:
        job = _job(srv, job_id)
        status = job["properties"]["status"]
        assert status == "InProgress", f"backup ended before it could be killed: {job}"
        if (job["properties"]["progress"]["bytesDone"] or 0) > 0:
            break
        assert time.monotonic() < deadline, f"no progress reported: {job}"
        time.sleep(0.1)

    # Format 2: pg_dump passes the TOC, then psql streams each table's COPY.
    dumpers = [
        pid for pid in _children(srv.pid) if any(t in _cmdline(pid) for t in ("pg_dump", "psql"))
    ]
    assert dumpers, f"no pg_dump or psql child of pgvault serve ({_children(srv.pid)})"

    srv.kill9()

    # Its pg_dump loses the pipe's reader and dies of SIGPIPE; if not, kill it ourselves.
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in dumpers) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [pid for pid in dumpers if _alive(pid)]
    for pid in survivors:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if survivors:
        warnings.warn(f"dumpers {survivors} outlived pgvault serve; killed it", stacklevel=1)

    srv.start()  # same PGVAULT_HOME and port; start-up sweeps abandoned jobs

    job = _job(srv, job_id)
    assert job["properties"]["status"] == "Failed", job
    errors = job["properties"]["errorDetails"]
    assert errors, job
    assert errors[0]["code"] == "WorkerLost", errors
    assert job["properties"]["endTime"]

    points = srv.cli_json("recovery-point", "list", "--vault-name", VAULT, "--instance", INSTANCE)
    assert points["value"] == []

    # What the abandoned point left behind; asserted last, so that the rest of the
    # behaviour is checked even when this fails.
    leftovers = _files_under(srv.home / "datastore" / "vaults")

    # The service still works: a new backup completes and is the only recovery point.
    done = srv.cli_json(
        "backup", "now", "--vault-name", VAULT, "--instance", INSTANCE, "--wait", timeout=180
    )
    assert done["properties"]["status"] == "Completed", done["properties"]["errorDetails"]
    new_point = done["properties"]["extendedInfo"]["sourceRecoverPoint"]["recoveryPointID"]
    points = srv.cli_json("recovery-point", "list", "--vault-name", VAULT, "--instance", INSTANCE)
    assert [p["name"] for p in points["value"]] == [new_point]
    jobs = srv.cli_json("job", "list", "--vault-name", VAULT)["value"]
    assert {j["name"]: j["properties"]["status"] for j in jobs} == {
        job_id: "Failed",
        done["name"]: "Completed",
    }

    # Nothing of the abandoned point may stay in the datastore -- not even the local
    # backend's in-progress multipart file (`<object>#<n>`), which listing does not show.
    assert leftovers == [], f"objects of the abandoned point left in the datastore: {leftovers}"


_INTERRUPTED_UPLOAD = """
import sys, time
from pgvault.storage.backends import local_location

def chunks():
    for _ in range(3):
        yield b"x" * (8 << 20)
    print("WRITTEN", flush=True)
    time.sleep(600)

local_location(sys.argv[1]).child("point").put_stream("dump.pgc.zst", chunks())
"""


def test_cleanup_removes_an_upload_interrupted_by_kill(tmp_path: Path) -> None:
    """The root of the leftover above, at the storage layer: a process killed in the middle
    of `Location.put_stream` into a local datastore leaves the backend's in-progress file,
    and `Location.delete_all()` -- what the sweep uses to clean a point -- must remove it."""
    from pgvault.storage.backends import local_location

    with subprocess.Popen(
        [sys.executable, "-c", _INTERRUPTED_UPLOAD, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "WRITTEN"
            deadline = time.monotonic() + 30
            while not _files_under(tmp_path) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _files_under(tmp_path), "the upload wrote nothing before the kill"
        finally:
            proc.kill()

    point = local_location(tmp_path).child("point")
    assert point.list() == []  # nothing visible: the object never completed
    point.delete_all()
    assert _files_under(tmp_path) == []
