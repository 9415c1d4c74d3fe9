"""A throwaway PostgreSQL 15 cluster owned by the benchmark.

Its own cluster (not a shared dev server) so that settings are known (fsync on, 512 MB shared
buffers, 4 GB max_wal_size) and nothing else writes to it while it is measured.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from .measure import run

SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "shared_buffers": "'512MB'",
    "max_wal_size": "'4GB'",
    "fsync": "on",
    "logging_collector": "off",
}


def free_port() -> int:
    """A port the kernel just handed out; good enough for a private benchmark."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_bindir() -> Path:
    """PostgreSQL 15's own binaries: /usr/bin/pg_dump is Debian's version-picking wrapper."""
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb and pg_ctl refuse to run as root; drop to the postgres user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def _chown_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user="postgres", group="postgres")


@dataclass
class Cluster:
    """Paths, port and password of one cluster; ``env`` variants say how clients reach it."""

    root: Path
    bindir: Path
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sockdir(self) -> Path:
        return self.root / "sock"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    def base_env(self) -> dict[str, str]:
        """Process env without stray PG* variables, with PG 15's bindir first on PATH."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PATH"] = f"{self.bindir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def tcp_env(self) -> dict[str, str]:
        """How measured raw tools connect: TCP + password, the same path pgvault has to use."""
        return {
            **self.base_env(),
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGUSER": "postgres",
            "PGPASSWORD": self.password,
        }

    def socket_env(self) -> dict[str, str]:
        """How untimed admin helpers connect: unix socket, trust."""
        return {
            **self.base_env(),
            "PGHOST": str(self.sockdir),
            "PGPORT": str(self.port),
            "PGUSER": "postgres",
        }

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[tuple[Any, ...]]:
        """Autocommit admin connection over the socket (CHECKPOINT, DROP DATABASE need it)."""
        return psycopg.connect(
            host=str(self.sockdir),
            port=self.port,
            user="postgres",
            dbname=dbname,
            autocommit=True,
        )

    def init(self) -> None:
        """initdb with password auth on TCP and trust on the socket, then our settings."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.sockdir.mkdir(exist_ok=True)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        for p in (self.root, self.sockdir, pwfile):
            _chown_postgres(p)
        initdb = [
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",  # only initdb's own flush; the server runs with fsync=on
        ]
        try:
            run(_as_postgres(initdb), self.base_env(), cwd=self.root)
        finally:
            pwfile.unlink(missing_ok=True)
        settings = {**SERVER_SETTINGS, "port": str(self.port)}
        settings["unix_socket_directories"] = f"'{self.sockdir}'"
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# pgvault benchmark\n")
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())

    def start(self) -> None:
        ctl = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile)]
        run(_as_postgres([*ctl, "-w", "-t", "120", "start"]), self.base_env(), cwd=self.root)

    def stop(self) -> None:
        """Immediate stop: the cluster is thrown away, so a shutdown checkpoint is wasted time."""
        if not (self.data / "postmaster.pid").exists():
            return
        ctl = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w"]
        run(_as_postgres([*ctl, "stop"]), self.base_env(), cwd=self.root)

    def drop_database(self, name: str) -> None:
        """Untimed reset between restore runs, followed by a CHECKPOINT like the baseline's
        ``--prepare 'dropdb --if-exists rt && psql -c CHECKPOINT'`` so runs start equal."""
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute("CHECKPOINT")

    def database_size(self, name: str) -> int:
        with self.connect() as conn:
            row = conn.execute("SELECT pg_database_size(%s)", (name,)).fetchone()
        assert row is not None
        return int(row[0])

    def version(self) -> str:
        with self.connect() as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"
