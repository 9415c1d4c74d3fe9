"""The shipped systemd units work as written.

systemd's own checker accepts both unit files (no warning), and their `ExecStart` command
lines, run with the units' `Environment=` settings and a config file of the shape the
units point at, start a `pgvault serve --no-worker` that answers `/readyz` and a
`pgvault worker` that registers with the Procrastinate queue on the same PostgreSQL
metadata; both shut down cleanly on SIGTERM, which is how systemd stops them.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.e2e.conftest import PGVAULT_BIN
from tests.support.pg import PgCluster, free_port

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
INSTALLED_BIN = "/opt/pgvault/.venv/bin/pgvault"


def _service(unit: str) -> dict[str, list[str]]:
    """The [Service] section of a unit: each key with all its values, in order."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in (UNITS / unit).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_systemd_accepts_the_unit_files(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (scripts/bootstrap installs systemd)")
    copies = []
    for unit in sorted(UNITS.glob("*.service")):  # the binary where this checkout has it
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace(INSTALLED_BIN, PGVAULT_BIN))
        copies.append(str(copy))
    assert len(copies) == 2
    done = subprocess.run(
        [tool, "verify", *copies], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""  # not even a warning


@pytest.fixture(scope="module")
def metadata() -> Iterator[str]:
    cluster = PgCluster.start("units")
    name = f"meta_{uuid.uuid4().hex[:8]}"
    cluster.execute(f'CREATE DATABASE "{name}"')
    yield cluster.superuser_url(name)
    cluster.stop()


def _command(unit: str, port: int) -> list[str]:
    (line,) = _service(unit)["ExecStart"]
    argv = shlex.split(line)
    assert argv[0] == INSTALLED_BIN
    argv[0] = PGVAULT_BIN
    if "--port" in argv:  # the unit's 0.0.0.0:8443 here is loopback and a free port
        argv[argv.index("--port") + 1] = str(port)
        argv[argv.index("--host") + 1] = "127.0.0.1"
    return argv


def _environment(unit: str, home: Path, config: Path) -> dict[str, str]:
    """The unit's Environment= lines, with its paths moved under this test's directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGVAULT_")}
    for assignment in _service(unit)["Environment"]:
        key, _, value = assignment.partition("=")
        env[key] = value
    assert env["PGVAULT_HOME"] == "/var/lib/pgvault"
    assert env["PGVAULT_CONFIG"] == "/etc/pgvault/pgvault.toml"
    env.update(PGVAULT_HOME=str(home), PGVAULT_CONFIG=str(config))
    return env


def _stop(proc: subprocess.Popen[bytes], unit: str) -> int:
    """SIGTERM, as systemd sends, within the unit's TimeoutStopSec."""
    (timeout,) = _service(unit)["TimeoutStopSec"]
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=int(timeout))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def _until(check: object, what: str, procs: list[subprocess.Popen[bytes]], log: Path) -> None:
    deadline = time.monotonic() + 120
    while not check():  # type: ignore[operator]
        dead = [p.args for p in procs if p.poll() is not None]
        assert not dead, f"exited: {dead}\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"{what}\n{log.read_text()[-4000:]}"
        time.sleep(0.2)


def test_the_units_start_serve_and_a_worker_that_stop_on_sigterm(
    metadata: str, tmp_path: Path
) -> None:
    home = tmp_path / "var-lib-pgvault"
    config = tmp_path / "etc-pgvault" / "pgvault.toml"
    config.parent.mkdir()
    config.write_text(
        "[service]\n"
        f'datastore_url = "{(tmp_path / "datastore").as_uri()}"\n'
        'log_format = "json"\n'
        "[executor]\n"
        'executor = "procrastinate"\n'
    )
    config.chmod(0o640)
    secrets = {"PGVAULT_DATABASE_URL": metadata}  # what /etc/pgvault/pgvault.env holds
    port = free_port()
    log = tmp_path / "units.log"
    procs: list[subprocess.Popen[bytes]] = []
    with log.open("ab") as out:
        for unit in ("pgvault-serve.service", "pgvault-worker.service"):
            env = {**_environment(unit, home, config), **secrets}
            procs.append(subprocess.Popen(_command(unit, port), env=env, stdout=out, stderr=out))
    serve, worker = procs
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        def registered() -> bool:
            with psycopg.connect(metadata, autocommit=True) as conn:
                try:
                    row = conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()
                except psycopg.errors.UndefinedTable:
                    return False
            return row is not None and row[0] == 1

        _until(ready, "serve never became ready", procs, log)
        _until(registered, "the worker never registered", procs, log)
        assert _stop(worker, "pgvault-worker.service") == 0, log.read_text()[-4000:]
        # uvicorn shuts down gracefully, then re-raises the signal it caught: systemd counts
        # an exit by SIGTERM as clean.
        assert _stop(serve, "pgvault-serve.service") in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in log.read_text()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert (home / "keys").is_dir()  # the unit's PGVAULT_HOME is where its state went
