"""PostgreSQL client tools and connections, with errors mapped to Azure's user-error codes.

Passwords reach subprocesses only through the environment (PGPASSWORD), never argv,
and connection errors are rewritten so that no message can quote a password.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from pgvault.connstr import Credentials
from pgvault.errors import Code, PgVaultError, UserError

CONNECT_TIMEOUT = 10


@dataclass(frozen=True)
class Endpoint:
    """Where to connect and as whom: a registered server's address plus secret credentials."""

    host: str
    port: int
    creds: Credentials

    def conninfo(self, dbname: str, *, with_password: bool = False) -> str:
        kwargs: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "user": self.creds.user,
            "dbname": dbname,
            "sslmode": self.creds.sslmode,
            "connect_timeout": CONNECT_TIMEOUT,
            "application_name": "pgvault",
        }
        if with_password:
            kwargs["password"] = self.creds.password
        return make_conninfo(**kwargs)  # type: ignore[arg-type]

    def env(self) -> dict[str, str]:
        """Environment for a client tool: the password travels here, not in argv."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGPASSWORD"] = self.creds.password
        env["PGCONNECT_TIMEOUT"] = str(CONNECT_TIMEOUT)
        return env


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
