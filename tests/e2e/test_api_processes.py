"""`pgvault serve --api-processes 2` over https: calls are answered by either process, and
exactly one of them (the holder of `serve.lock`) runs the jobs they queue."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import HOST, PgvaultServer, superuser_connstr
from tests.support.pg import PgCluster, free_port
from tests.support.tls import TlsFiles

REGION = "eastus"
DATABASE = "tiny"


@pytest.fixture(scope="module")
def small_pg() -> Iterator[PgCluster]:
    cluster = PgCluster.start("e2e-api-processes")
    try:
        cluster.create_database(DATABASE)
        cluster.execute(
            "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 100) g", dbname=DATABASE
        )
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def two_process_server(tls_files: TlsFiles) -> Iterator[PgvaultServer]:
    base = Path(tempfile.mkdtemp(prefix="pgvault-e2e-procs-"))
    home = base / "home"
    home.mkdir()
    server = PgvaultServer(home, free_port(), base / "serve.log", tls_files)
    server.serve_args += ["--api-processes", "2"]
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


def _holds_lock(pid: int, lock: Path) -> bool:
    try:
        return any(str(fd.readlink()) == str(lock) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def test_two_api_processes_one_runs_jobs(
    two_process_server: PgvaultServer, small_pg: PgCluster
) -> None:
    srv = two_process_server
    holders = [p for p in _children(srv.pid) if _holds_lock(p, srv.home / "serve.lock")]
    assert len(holders) == 1, f"serve.lock held by {holders}\n{srv.log()[-3000:]}"
    assert srv.log().count("Application startup complete") == 2

    srv.cli("server", "add", "--name", "src", "--host", HOST, "--port", str(small_pg.port),
            "--region", REGION)  # fmt: skip
    srv.cli("keyvault", "create", "--name", "kv1", "--region", REGION)
    secret = srv.cli_json(
        "keyvault", "secret", "set", "--vault-name", "kv1", "--name", "pw",
        input=superuser_connstr(small_pg, DATABASE),
    )["properties"]["secretUri"]  # fmt: skip
    vault = srv.cli_json("vault", "create", "--name", "v1", "--region", REGION)
    group = vault["id"].split("/providers/", 1)[0]
    for role in ("Reader", "Key Vault Secrets User"):
        srv.grant("vault:v1", role, group)
    srv.cli("policy", "create", "--vault-name", "v1", "--name", "daily")
    srv.cli("instance", "create", "--vault-name", "v1", "--server", "src", "--database",
            DATABASE, "--policy", "daily", "--secret", secret, "--name", "i1")  # fmt: skip
    # Each call lands on either process; whichever queued it, the lock holder runs it.
    for _ in range(3):
        job = srv.cli_json("backup", "now", "--vault-name", "v1", "--instance", "i1", "--wait")
        assert job["properties"]["status"] == "Completed", job
    listed = srv.cli_json("job", "list", "--vault-name", "v1")
    assert [j["properties"]["status"] for j in listed["value"]] == ["Completed"] * 3
