"""End-to-end fixtures: real PostgreSQL clusters and real `pgvault serve` processes.

Everything here is a real process: the source cluster (``PgCluster``), the
service (the venv's ``pgvault`` console script started as ``pgvault serve``)
and every CLI call (a fresh ``pgvault`` process with ``PGVAULT_URL`` and
``PGVAULT_HOME`` set).  Each server gets its own temporary ``PGVAULT_HOME``.

When a test fails, the log of every ``pgvault serve`` still running is added
to the failure report (section "pgvault serve log") and printed on teardown.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.pg import PgCluster, free_port
from tests.support.sampledb import build_rich_database, create_sample_roles
from tests.support.tls import TlsFiles, tls_files

__all__ = ["tls_files"]  # the fixture, for this directory's tests

#: The venv's console script (the venv's python is a symlink; its bin dir is the venv's).
PGVAULT_BIN = str(Path(sys.executable).parent / "pgvault")
HOST = "127.0.0.1"
SOURCE_DB = "shop"
RESTORER = "restorer"
RESTORER_PASSWORD = "rst-" + secrets.token_urlsafe(12)
STARTUP_TIMEOUT = 30.0
API_VERSION = "2025-07-01"

#: Variables that would point a test's server or CLI at someone else's service or state.
_SERVICE_VARS = {
    "PGVAULT_URL", "PGVAULT_HOME", "PGVAULT_TOKEN", "PGVAULT_DATABASE_URL",
    "PGVAULT_DATASTORE_URL", "PGVAULT_MASTER_KEY", "PGVAULT_PUBLIC_URL", "PGVAULT_WORKERS",
    "PGVAULT_TLS_CERT", "PGVAULT_TLS_KEY", "PGVAULT_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "PGVAULT_LOCAL_STORAGE_ROOTS", "PGVAULT_STORAGE_ENDPOINT_ALLOW",
    "PGVAULT_STORAGE_ENDPOINT_DENY",
}  # fmt: skip
#: Test storage lives on loopback: the operator allows it explicitly (private ranges are not).
LOOPBACK_ENDPOINTS = "127.0.0.0/8,::1"

_live_servers: list[PgvaultServer] = []


class PgvaultServer:
    """One `pgvault serve` process on a fixed home and port (restartable).

    With `tls` it serves https (`--tls-cert`/`--tls-key`, or PGVAULT_TLS_CERT/KEY when
    `tls_from_env`), and every CLI call and `api()` trusts that certificate
    (PGVAULT_CA_BUNDLE for the CLI, an SSL context for httpx).
    """

    def __init__(
        self,
        home: Path,
        port: int,
        log_path: Path,
        tls: TlsFiles | None = None,
        *,
        tls_from_env: bool = False,
    ) -> None:
        self.home = home
        self.port = port
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://{HOST}:{port}"
        self.log_path = log_path
        #: Local storage accounts live beside the home (the operator's storage root), and
        #: storage endpoints on loopback are allowed, as an operator of a test host would.
        self.env = {
            "PGVAULT_URL": self.url,
            "PGVAULT_HOME": str(home),
            "PGVAULT_LOCAL_STORAGE_ROOTS": str(home.parent),
            "PGVAULT_STORAGE_ENDPOINT_ALLOW": LOOPBACK_ENDPOINTS,
        }
        self.serve_args = ["serve", "--host", HOST, "--port", str(port)]
        #: What httpx calls (health checks, `api()`) verify the certificate with.
        self.verify: ssl.SSLContext | bool = True
        if tls is not None:
            self.env["PGVAULT_CA_BUNDLE"] = str(tls.cert)
            self.verify = tls.client_context()
            if tls_from_env:
                self.env.update(PGVAULT_TLS_CERT=str(tls.cert), PGVAULT_TLS_KEY=str(tls.key))
            else:
                self.serve_args += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
        self.proc: subprocess.Popen[bytes] | None = None
        #: stdout + stderr of every CLI call, for "the secret never shows" checks.
        self.cli_outputs: list[str] = []
        #: Set once a failure report carries this server's log (no need to print it again).
        self.log_reported = False

    # -- lifecycle -------------------------------------------------------------------------

    def _process_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SERVICE_VARS}
        env.update(self.env)
        env.update({"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"})
        return env

    def start(self) -> None:
        """Start `pgvault serve` and wait until GET /healthz answers 200."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== pgvault serve starting (port {self.port}) =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [PGVAULT_BIN, *self.serve_args],
                env=self._process_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: pg_dump children die with it
            )
        if self not in _live_servers:
            _live_servers.append(self)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"pgvault serve exited with {self.proc.returncode}:\n{self.log()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                resp = httpx.get(f"{self.url}/healthz", timeout=2, verify=self.verify)
                if resp.status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"pgvault serve did not get healthy:\n{self.log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Terminate (then kill) the server and anything left in its process group."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # our own group: stray pg_dump/pg_restore
        if self in _live_servers:
            _live_servers.remove(self)

    def kill9(self) -> None:
        """SIGKILL the serve process only (not its children) and reap it."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)  # reap: a zombie would still look alive to the sweep

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    # -- CLI -------------------------------------------------------------------------------

    def cli(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run `pgvault ARGS` against this server; check=True fails the test on rc != 0."""
        proc = subprocess.run(
            [PGVAULT_BIN, *args],
            env=self._process_env(),
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.cli_outputs.append(proc.stdout + proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"pgvault {' '.join(args)} exited with {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def cli_json(self, *args: str, input: str | None = None, timeout: float = 120) -> Any:
        """Run `pgvault ARGS --output json` (must succeed) and parse its stdout."""
        proc = self.cli(*args, "--output", "json", input=input, timeout=timeout)
        try:
            return json.loads(proc.stdout)
        except ValueError as exc:
            raise AssertionError(
                f"pgvault {' '.join(args)} --output json printed no JSON:\n{proc.stdout!r}"
            ) from exc

    def token(self) -> str:
        """A bearer token from `pgvault auth token` (its last line)."""
        lines = self.cli("auth", "token").stdout.strip().splitlines()
        assert lines, "pgvault auth token printed nothing"
        return lines[-1].strip()

    # -- identity and access ---------------------------------------------------------------

    def admin_credentials(self) -> dict[str, str]:
        """The admin service principal's `clientId` / `clientSecret` (under PGVAULT_HOME)."""
        creds: dict[str, str] = json.loads((self.home / "credentials.json").read_text())
        return creds

    def api(self, method: str, path: str, *, token: str | None = None, **kw: Any) -> httpx.Response:
        """One plain HTTP call (api-version set; bearer token if given); any status."""
        headers = dict(kw.pop("headers", None) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        params = {"api-version": API_VERSION, **(kw.pop("params", None) or {})}
        return httpx.request(
            method,
            self.url + path,
            headers=headers,
            params=params,
            timeout=60,
            verify=self.verify,
            **kw,
        )

    def client_token(self, client_id: str, secret: str) -> str:
        """A token for a service principal: `POST /oauth2/token` with client_credentials."""
        resp = self.api(
            "POST",
            "/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": client_id,
                  "client_secret": secret},
        )  # fmt: skip
        assert resp.status_code == 200, resp.text
        token: str = resp.json()["access_token"]
        return token

    def subscription(self) -> str:
        """The service's default subscription id."""
        resp = self.api("GET", "/subscriptions", token=self.token())
        assert resp.status_code == 200, resp.text
        defaults = [s for s in resp.json()["value"] if s["isDefault"]]
        assert len(defaults) == 1, resp.text
        sub: str = defaults[0]["subscriptionId"]
        return sub

    def grant(self, assignee: str, role: str, scope: str) -> Any:
        """`pgvault role assignment create` (as the admin), returning the assignment."""
        return self.cli_json(
            "role", "assignment", "create", "--assignee", assignee, "--role", role,
            "--scope", scope,
        )  # fmt: skip


@contextlib.contextmanager
def running_pgvault(
    request: pytest.FixtureRequest, tls: TlsFiles | None = None, *, tls_from_env: bool = False
) -> Iterator[PgvaultServer]:
    """A started server on a fresh home (https with `tls`); stopped (log printed on failure)."""
    base = Path(tempfile.mkdtemp(prefix="pgvault-e2e-"))
    home = base / "home"
    home.mkdir()
    server = PgvaultServer(home, free_port(), base / "serve.log", tls, tls_from_env=tls_from_env)
    failed_before = request.session.testsfailed
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if request.session.testsfailed > failed_before and not server.log_reported:
            print(f"\n----- pgvault serve log ({server.url}, home {home}) -----")
            print(server.log()[-20000:])
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pgvault_server(request: pytest.FixtureRequest) -> Iterator[PgvaultServer]:
    """A fresh `pgvault serve` for one test."""
    with running_pgvault(request) as server:
        yield server


@pytest.fixture(scope="module")
def pgvault_module_server(request: pytest.FixtureRequest) -> Iterator[PgvaultServer]:
    """A fresh `pgvault serve` shared by the tests of one module."""
    with running_pgvault(request) as server:
        yield server


@pytest.fixture(scope="module")
def pgvault_tls_module_server(
    request: pytest.FixtureRequest, tls_files: TlsFiles
) -> Iterator[PgvaultServer]:
    """A fresh `pgvault serve --tls-cert --tls-key` (self-signed) shared by a module's tests."""
    with running_pgvault(request, tls_files) as server:
        yield server


@pytest.fixture(scope="module")
def source_pg() -> Iterator[PgCluster]:
    """Source cluster with the rich `shop` database and a CREATEDB role `restorer`."""
    cluster = PgCluster.start("e2e-source")
    try:
        build_rich_database(cluster, SOURCE_DB)
        cluster.create_role(RESTORER, RESTORER_PASSWORD, createdb=True)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def target_pg() -> Iterator[PgCluster]:
    """A second, empty cluster where the sample database's roles exist."""
    cluster = PgCluster.start("e2e-target")
    try:
        create_sample_roles(cluster)
        yield cluster
    finally:
        cluster.stop()


def superuser_connstr(cluster: PgCluster, database: str = SOURCE_DB) -> str:
    """The key-vault secret value for the cluster's superuser (ADO.NET style)."""
    return (
        f"Server={HOST};Port={cluster.port};Database={database};User Id=postgres;"
        f"Password={cluster.superuser_password};"
    )


def restorer_connstr(cluster: PgCluster) -> str:
    """The key-vault secret value for the non-superuser `restorer`."""
    return f"Server={HOST};Port={cluster.port};User Id={RESTORER};Password={RESTORER_PASSWORD};"


def pg_bindir() -> Path:
    out = subprocess.run(
        ["pg_config", "--bindir"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return Path(out)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        for server in list(_live_servers):
            server.log_reported = True
            report.sections.append((f"pgvault serve log ({server.url})", server.log()[-20000:]))
    return report


@atexit.register
def _stop_leftover_servers() -> None:
    for server in list(_live_servers):
        with contextlib.suppress(Exception):  # best effort at interpreter exit
            server.stop()
