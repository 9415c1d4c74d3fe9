"""PostgreSQL client tools and connections, with errors mapped to Azure's user-error codes.

Passwords reach subprocesses only through the environment (PGPASSWORD), never argv,
and connection errors are rewritten so that no message can quote a password.

Password exchange: every connection pgvault opens itself (psycopg, whose bundled libpq
is 16 or newer) carries `require_auth`, so a server that asks for a cleartext password
(or md5, unless the registered server allows it) gets nothing and the connection fails
with UserErrorInsecurePasswordAuthentication. pg_dump and pg_restore get the same
requirement through PGREQUIREAUTH, which only libpq 16+ reads (Debian bookworm's
PostgreSQL 15 tools use libpq 15 and ignore it): jobs therefore open a psycopg
connection to the same address first (the backup's probe, the restore's CREATE
DATABASE) and never start a tool for a server that asked for a weaker exchange;
`sslmode=verify-full` with the server's root certificate closes the rest (a network
attacker answering the tool's connection in the probe's place).
"""

from __future__ import annotations

import atexit
import collections
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo

from pgvault.connstr import Credentials
from pgvault.errors import Code, PgVaultError, UserError

CONNECT_TIMEOUT = 10
#: libpq `require_auth` per registered server's passwordAuthentication setting.
REQUIRE_AUTH = {"scram-sha-256": "scram-sha-256", "md5": "scram-sha-256,md5"}
_REQUIRE_AUTH_LIBPQ = 160000  # require_auth came with libpq 16


@dataclass(frozen=True)
class Endpoint:
    """Where to connect and as whom: a registered server's address plus secret credentials.

    Built only by `jobkinds.base.endpoint`, which has checked that the address is the
    one the secret names. `sslmode` is the stricter of the server's and the secret's;
    `root_cert` is the server's root certificate (PEM) for verify-ca/verify-full.
    """

    host: str
    port: int
    creds: Credentials
    sslmode: str = "prefer"
    root_cert: str | None = field(default=None, repr=False)
    password_auth: str = "scram-sha-256"

    @property
    def require_auth(self) -> str:
        return REQUIRE_AUTH.get(self.password_auth, REQUIRE_AUTH["scram-sha-256"])

    def conninfo(self, dbname: str, *, with_password: bool = False) -> str:
        """A conninfo string. With the password it is for psycopg (and carries
        require_auth); without, it is a tool's argv (require_auth goes in `env`)."""
        kwargs: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "user": self.creds.user,
            "dbname": dbname,
            "sslmode": self.sslmode,
            "connect_timeout": CONNECT_TIMEOUT,
            "application_name": "pgvault",
        }
        if self.root_cert:
            kwargs["sslrootcert"] = root_cert_file(self.root_cert)
        if with_password:
            kwargs["password"] = self.creds.password
            kwargs["require_auth"] = self.require_auth
        return make_conninfo(**kwargs)  # type: ignore[arg-type]

    def env(self) -> dict[str, str]:
        """Environment for a client tool: the password travels here, not in argv."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGPASSWORD"] = self.creds.password
        env["PGCONNECT_TIMEOUT"] = str(CONNECT_TIMEOUT)
        env["PGREQUIREAUTH"] = self.require_auth  # read by libpq >= 16 only
        return env


_cert_lock = threading.Lock()
_cert_dir: Path | None = None


def root_cert_file(pem: str) -> str:
    """A 0600 file holding `pem` (in a 0700 directory private to this process, removed at
    exit), for libpq's sslrootcert; one file per distinct certificate."""
    global _cert_dir
    with _cert_lock:
        if _cert_dir is None or not _cert_dir.is_dir():
            _cert_dir = Path(tempfile.mkdtemp(prefix="pgvault-rootcert-"))
            atexit.register(shutil.rmtree, _cert_dir, True)
        path = _cert_dir / (hashlib.sha256(pem.encode()).hexdigest()[:32] + ".crt")
        if not path.exists():
            partial = path.with_suffix(".tmp")
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(pem)
            os.replace(partial, path)
        return str(path)


@lru_cache(maxsize=1)
def bindir() -> Path:
    """The newest PostgreSQL client tools: $PGVAULT_PG_BINDIR, pg_config --bindir, or PATH."""
    if os.environ.get("PGVAULT_PG_BINDIR"):
        return Path(os.environ["PGVAULT_PG_BINDIR"])
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_dump"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    found = shutil.which("pg_dump")
    if found:
        return Path(found).parent
    raise PgVaultError(
        "pg_dump was not found. Install the PostgreSQL client tools (Debian: "
        "apt-get install postgresql-client-15) or set PGVAULT_PG_BINDIR.",
        code=Code.BackupToolNotFound,
    )


def tool(name: str) -> str:
    return str(bindir() / name)


@lru_cache(maxsize=8)
def tool_version(name: str) -> tuple[int, str]:
    """(major, full version text) of a client tool."""
    out = subprocess.run([tool(name), "--version"], capture_output=True, text=True, check=True)
    text = out.stdout.strip()
    match = re.search(r"\)\s*(\d+)", text)
    if not match:
        raise PgVaultError(
            f"Cannot read the version of {name}: {text!r}", code=Code.BackupToolError
        )
    return int(match.group(1)), text


def _map_connect_error(exc: psycopg.Error, ep: Endpoint, dbname: str) -> PgVaultError:
    """Turn a libpq failure into a user error with a code and a fix (never the password)."""
    text = str(exc)
    sqlstate = getattr(exc, "sqlstate", None)
    where = f"{ep.host}:{ep.port}"
    if "authentication method requirement" in text:
        return UserError(
            f"The server at {where} asked for a password exchange weaker than "
            f"{ep.require_auth.replace(',', ' or ')}; pgvault sent no password.",
            code=Code.UserErrorInsecurePasswordAuthentication,
        )
    if any(
        marker in text
        for marker in ("certificate verify failed", "does not match host name", "root certificate")
    ):
        return UserError(
            f"The server at {where} did not present a certificate that the registered "
            f"server's root certificate verifies (sslmode={ep.sslmode}): {_first_line(text)}",
            code=Code.UserErrorServerCertificateNotTrusted,
        )
    if sqlstate == "28P01" or "password authentication failed" in text or sqlstate == "28000":
        return UserError(
            f"Login as {ep.creds.user!r} to the server at {where} failed: wrong user name or "
            "password in the key-vault secret.",
            code=Code.UserErrorDBUserAuthFailed,
            recommended_action="Update the key-vault secret with valid credentials.",
        )
    if sqlstate == "3D000" or ("does not exist" in text and "database" in text):
        return UserError(
            f"Database {dbname!r} does not exist on the server at {where}.",
            code=Code.UserErrorDBNotFound,
            recommended_action="Check the database name, or register the right server.",
        )
    return UserError(
        f"Cannot connect to the PostgreSQL server at {where}: "
        f"{_first_line(text).replace(ep.creds.password, '***') if ep.creds.password else _first_line(text)}",
        code=Code.UserErrorServerUnreachable,
        recommended_action="Check that the server is running and reachable from pgvault "
        "(host, port, firewall, pg_hba.conf).",
        retryable=True,
    )


def _first_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[0][:300] if lines else "unknown error"


def connect(ep: Endpoint, dbname: str) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection, or a user error that says what to fix."""
    if pq.version() < _REQUIRE_AUTH_LIBPQ:
        raise PgVaultError(
            f"psycopg uses libpq {pq.version()}, which cannot refuse cleartext or md5 "
            "password exchange (require_auth needs libpq 16 or newer); pgvault does not "
            "send a password over it. Install psycopg[binary] (bundles a recent libpq).",
            code=Code.BackupToolNotFound,
        )
    try:
        return psycopg.connect(ep.conninfo(dbname, with_password=True), autocommit=True)
    except psycopg.Error as exc:
        raise _map_connect_error(exc, ep, dbname) from None


def server_major(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    return int(conn.info.server_version) // 10000


class StderrTail:
    """Drain a pipe in a thread, keeping the last lines (bounded) for error messages."""

    def __init__(self, pipe: object, secrets: tuple[str, ...] = ()) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=40)
        self._secrets = tuple(s for s in secrets if s)
        self._thread = threading.Thread(target=self._drain, args=(pipe,), daemon=True)
        self._thread.start()

    def _drain(self, pipe: object) -> None:
        """Read to EOF, then close the pipe: it is this thread's alone to close."""
        try:
            for raw in iter(pipe.readline, b""):  # type: ignore[attr-defined]
                line = raw.decode(errors="replace").rstrip()
                for secret in self._secrets:
                    line = line.replace(secret, "***")
                self.lines.append(line)
        finally:
            pipe.close()  # type: ignore[attr-defined]

    def text(self) -> str:
        self._thread.join(timeout=5)
        return "\n".join(self.lines)

    def summary(self) -> str:
        """The most telling line (the last error), once the pipe is fully drained."""
        self._thread.join(timeout=5)
        errors = [ln for ln in self.lines if "error" in ln.lower() or "fatal" in ln.lower()]
        return (errors or list(self.lines) or ["(no output)"])[-1][:500]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
