"""Real object-storage emulators for tests: moto (S3) and Azurite (Azure Blob).

Both context managers start the server on a free ``127.0.0.1`` port in its own
process group, wait until it answers HTTP, yield an endpoint description and,
on exit, kill the whole process group (SIGTERM, then SIGKILL).

Azurite comes from npm.  The ``azurite-blob`` binary is looked up at
``$PGVAULT_AZURITE_BIN``, then ``<repo>/.cache/npm/node_modules/.bin/azurite-blob``,
then on ``PATH``; if none exists, ``npm install --prefix <repo>/.cache/npm azurite@3``
is run once (guarded by a file lock, so parallel test processes install once).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

from .pg import free_port

__all__ = [
    "AZURITE_ACCOUNT_KEY",
    "AZURITE_ACCOUNT_NAME",
    "AzuriteEndpoint",
    "S3Endpoint",
    "ServiceError",
    "azurite_blob",
    "find_azurite_blob",
    "moto_s3",
]

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
NPM_PREFIX = REPO_ROOT / ".cache" / "npm"
AZURITE_PACKAGE = "azurite@3"

#: Azurite's well-known development storage account.
AZURITE_ACCOUNT_NAME = "devstoreaccount1"
AZURITE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

STARTUP_TIMEOUT = 30.0


class ServiceError(RuntimeError):
    """An emulator could not be installed or started."""


# ---------------------------------------------------------------------------
# process helpers


@dataclass
class _Server:
    proc: subprocess.Popen[bytes]
    log_path: Path
    workdir: Path

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


def _start(argv: Sequence[str], name: str, env: dict[str, str] | None = None) -> _Server:
    workdir = Path(tempfile.mkdtemp(prefix=f"pgvault-{name}-"))
    log_path = workdir / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(argv),
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group, killed as a whole
        )
    return _Server(proc, log_path, workdir)


def _stop(server: _Server) -> None:
    """Kill the server's process group and remove its work dir."""
    try:
        for sig, grace in ((signal.SIGKILL, 5.0),):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.proc.pid, sig)
            try:
                server.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
            # The leader is gone; make sure no child survived it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.proc.pid, signal.SIGKILL)
            break
    finally:
        shutil.rmtree(server.workdir, ignore_errors=True)


def _wait_http(server: _Server, url: str, timeout: float = STARTUP_TIMEOUT) -> None:
    """Wait until *url* gives any HTTP response (error statuses count)."""
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise ServiceError(
                f"{server.proc.args!r} exited with {server.proc.returncode}:\n{server.log()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise ServiceError(f"{url} did not answer within {timeout:.0f}s:\n{server.log()}")
        time.sleep(0.05)


@contextlib.contextmanager
def _running(argv: Sequence[str], name: str, probe_url: str) -> Iterator[_Server]:
    server = _start(argv, name)
    try:
        _wait_http(server, probe_url)
        yield server
    finally:
        _stop(server)


# ---------------------------------------------------------------------------
# moto (S3)


@dataclass(frozen=True)
class S3Endpoint:
    """Connection facts for a moto S3 server."""

    endpoint_url: str
    access_key_id: str = "testing"
    secret_access_key: str = "testing"
    region: str = "us-east-1"

    def client(self) -> Any:
        """A boto3 S3 client for this endpoint (typed ``Any``: boto3 is untyped)."""
        boto3: Any = importlib.import_module("boto3")
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
        )

    def create_bucket(self, name: str) -> None:
        """Create bucket *name* (at least 3 characters)."""
        kwargs: dict[str, Any] = {"Bucket": name}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self.client().create_bucket(**kwargs)


def _moto_server_bin() -> Path:
    # Not resolved: the venv's python is a symlink, its bin dir is the venv's.
    candidate = Path(sys.executable).parent / "moto_server"
    if candidate.exists():
        return candidate
    found = shutil.which("moto_server")
    if found:
        return Path(found)
    raise ServiceError("moto_server not found; pip install 'moto[server]'")


@contextlib.contextmanager
def moto_s3() -> Iterator[S3Endpoint]:
    """Run ``moto_server`` (in-memory S3) on a free port for the duration."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    argv = [str(_moto_server_bin()), "-H", HOST, "-p", str(port)]
    with _running(argv, "moto", url + "/"):
        yield S3Endpoint(endpoint_url=url)


# ---------------------------------------------------------------------------
# Azurite (Azure Blob)


@dataclass(frozen=True)
class AzuriteEndpoint:
    """Connection facts for an Azurite blob server (dev account)."""

    port: int
    account_name: str = AZURITE_ACCOUNT_NAME
    account_key: str = AZURITE_ACCOUNT_KEY

    @property
    def blob_endpoint(self) -> str:
        """``http://127.0.0.1:PORT/devstoreaccount1``."""
        return f"http://{HOST}:{self.port}/{self.account_name}"

    @property
    def connection_string(self) -> str:
        """Connection string accepted by azure-storage-blob."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
            f"AccountKey={self.account_key};BlobEndpoint={self.blob_endpoint};"
        )

    def service_client(self) -> BlobServiceClient:
        """An azure-storage-blob client for this endpoint."""
        return BlobServiceClient.from_connection_string(self.connection_string)

    def create_container(self, name: str) -> None:
        """Create container *name* (at least 3 characters); no-op if it exists."""
        with self.service_client() as client, contextlib.suppress(ResourceExistsError):
            client.create_container(name)


def find_azurite_blob() -> Path | None:
    """Existing ``azurite-blob`` binary, without installing anything."""
    override = os.environ.get("PGVAULT_AZURITE_BIN")
    if override:
        if not Path(override).exists():
            raise ServiceError(f"PGVAULT_AZURITE_BIN={override!r} does not exist")
        return Path(override)
    cached = NPM_PREFIX / "node_modules" / ".bin" / "azurite-blob"
    if cached.exists():
        return cached
    found = shutil.which("azurite-blob")
    return Path(found) if found else None


def _ensure_azurite_blob() -> Path:
    found = find_azurite_blob()
    if found is not None:
        return found
    npm = shutil.which("npm")
    if npm is None:
        raise ServiceError("azurite-blob not found and npm is not installed")
    NPM_PREFIX.mkdir(parents=True, exist_ok=True)
    with open(NPM_PREFIX / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = find_azurite_blob()  # another process may have installed it
        if found is not None:
            return found
        proc = subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(NPM_PREFIX),
                "--no-audit",
                "--no-fund",
                AZURITE_PACKAGE,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise ServiceError(
                f"npm install {AZURITE_PACKAGE} failed:\n{proc.stdout}\n{proc.stderr}"
            )
    found = find_azurite_blob()
    if found is None:
        raise ServiceError(f"npm install {AZURITE_PACKAGE} did not produce azurite-blob")
    return found


@contextlib.contextmanager
def azurite_blob() -> Iterator[AzuriteEndpoint]:
    """Run Azurite's blob service (in-memory) on a free port for the duration."""
    binary = _ensure_azurite_blob()
    port = free_port()
    argv = [
        str(binary),
        "--blobHost",
        HOST,
        "--blobPort",
        str(port),
        "--inMemoryPersistence",
        "--disableTelemetry",
        "--silent",
        "--loose",
        "--skipApiVersionCheck",
    ]
    endpoint = AzuriteEndpoint(port=port)
    with _running(argv, "azurite", endpoint.blob_endpoint + "?comp=list"):
        yield endpoint
