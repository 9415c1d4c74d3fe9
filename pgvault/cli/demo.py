"""`pgvault demo`: the whole product on a machine with no database of its own.

Starts a throwaway PostgreSQL server from the installed server binaries (as the `postgres`
OS user when run as root: initdb refuses root), fills a sample database, starts
`pgvault serve`, and drives it through this CLI as a user would: protect, back up, restore
as a new database and as files, compare. It prints each step with its time and leaves the
portal running until Ctrl-C (or stops at once with --exit); everything lives in one
temporary directory that is removed at the end.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from pgvault.errors import BadRequest, Code, PgVaultError

REGION = "eastus"
ROWS = 20_000
#: What the comparison reads from the source and the restored database.
FINGERPRINT = (
    "SELECT (SELECT count(*) FROM orders), (SELECT sum(qty) FROM orders),"
    " (SELECT md5(string_agg(doc::text, ',' ORDER BY id)) FROM orders),"
    " (SELECT count(*) FROM customers)"
)
SAMPLE = f"""
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO customers SELECT i, 'customer ' || i FROM generate_series(1, 1000) i;
CREATE TABLE orders (id int PRIMARY KEY, customer int REFERENCES customers, qty int,
                     at timestamptz, doc jsonb);
INSERT INTO orders SELECT i, 1 + i % 1000, i % 7, now() - i * interval '1 min',
       jsonb_build_object('sku', 'SKU-' || (i % 977), 'qty', i % 7)
  FROM generate_series(1, {ROWS}) i;
CREATE INDEX ON orders (customer);
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def bindir() -> Path:
    """The newest installed PostgreSQL server binaries."""
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
        found = Path(out.stdout.strip())
        if (found / "initdb").exists():
            return found
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    for d in reversed(dirs):
        if Path(d, "initdb").exists():
            return Path(d)
    raise BadRequest(
        "No PostgreSQL server binaries (initdb) found.",
        code=Code.BadRequest,
        recommended_action="Install them (Debian: apt-get install postgresql-15), then run "
        "pgvault demo again.",
    )


class Demo:
    """One demo run: its directory, PostgreSQL server, `pgvault serve` and the steps' times."""

    def __init__(self, say: Any, api_port: int | None = None) -> None:
        self.say = say
        self.bin = bindir()
        self.work = Path(tempfile.mkdtemp(prefix="pgvault-demo-"))
        self.work.chmod(0o755)
        self.pg_dir = self.work / "pg"
        self.pg_port = _free_port()
        self.api_port = api_port or _free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.password = secrets.token_urlsafe(16)
        self.restorer_password = secrets.token_urlsafe(16)
        self.as_root = os.geteuid() == 0
        self.serve: subprocess.Popen[bytes] | None = None
        self.timings: list[tuple[str, float, str]] = []
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PGVAULT_", "PG"))},
            "PGVAULT_HOME": str(self.work / "home"),
            "PGVAULT_URL": self.url,
            "PGVAULT_LOCAL_STORAGE_ROOTS": str(self.work),
            "NO_COLOR": "1",
        }

    # -- PostgreSQL --------------------------------------------------------------------------

    def _pg(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            runuser = shutil.which("runuser") or "/usr/sbin/runuser"
            cmd = [runuser, "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=True, **kw)

    def start_postgres(self) -> None:
        if self.as_root:
            shutil.chown(self.work, "postgres")
        pwfile = self.work / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.as_root:
            shutil.chown(pwfile, "postgres")
        try:
            self._pg("initdb", "-D", str(self.pg_dir), "-U", "postgres", "-A", "scram-sha-256",
                     f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8", "--no-locale")  # fmt: skip
        finally:
            pwfile.unlink()
        opts = f"-p {self.pg_port} -k {self.work} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg("pg_ctl", "-D", str(self.pg_dir), "-l", str(self.work / "pg.log"), "-w",
                 "-o", opts, "start")  # fmt: skip

    def psql(self, sql: str, database: str = "postgres") -> str:
        env = {**self.env, "PGPASSWORD": self.password}
        out = subprocess.run(
            [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres",
             "-d", database, "-v", "ON_ERROR_STOP=1", "-tAq", "-c", sql],
            capture_output=True, text=True, check=True, env=env,
        )  # fmt: skip
        return out.stdout.strip()

    def sample(self) -> None:
        self.psql("CREATE DATABASE shop")
        self.psql(SAMPLE, "shop")
        self.psql(f"CREATE ROLE restorer LOGIN CREATEDB PASSWORD '{self.restorer_password}'")

    # -- pgvault -------------------------------------------------------------------------------

    def start_pgvault(self) -> None:
        log = open(self.work / "pgvault.log", "ab")  # noqa: SIM115 - the server's lifetime
        self.serve = subprocess.Popen(
            [*self.cli_prefix(), "serve", "--port", str(self.api_port)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            if self.serve.poll() is not None:
                break
            time.sleep(0.1)
        raise PgVaultError(
            f"pgvault serve did not start; see {self.work / 'pgvault.log'}.",
            code=Code.InternalError,
        )

    @staticmethod
    def cli_prefix() -> list[str]:
        return [sys.executable, "-m", "pgvault.cli.main"]

    def cli(self, *args: str, stdin: str | None = None) -> Any:
        """Run one `pgvault` command (JSON output) as a user would, timed and printed."""
        shown = " ".join(a if " " not in a else repr(a) for a in args)
        self.say(f"$ pgvault {shown}")
        started = time.monotonic()
        proc = subprocess.run(
            [*self.cli_prefix(), *args, "--output", "json"],
            env=self.env, input=stdin, capture_output=True, text=True, check=False,
        )  # fmt: skip
        took = time.monotonic() - started
        if proc.returncode != 0:
            raise PgVaultError(f"pgvault {shown} failed:\n{proc.stderr}", code=Code.InternalError)
        result = json.loads(proc.stdout) if proc.stdout.strip() else None
        duration = ""
        if isinstance(result, dict) and result.get("type", "").endswith("backupJobs"):
            props = result["properties"]
            duration = f"{props['status']} in {props['duration']}"
        self.timings.append((shown.split(" --")[0], took, duration))
        return result

    def run(self) -> None:
        """The product end to end; raises on any mismatch."""
        t0 = time.monotonic()
        self.say(f"== PostgreSQL {self.bin.parent.name} on 127.0.0.1:{self.pg_port} ({self.work})")
        self.start_postgres()
        self.sample()
        self.timings.append(("start PostgreSQL + sample database", time.monotonic() - t0, ""))
        self.say(f"== pgvault serve on {self.url}")
        self.start_pgvault()
        secret_in = (
            f"Server=127.0.0.1;Port={self.pg_port};Database=shop;User Id=postgres;"
            f"Password={self.password};"
        )
        restorer = (
            f"Server=127.0.0.1;Port={self.pg_port};User Id=restorer;"
            f"Password={self.restorer_password};"
        )
        self.cli("server", "add", "--name", "demo-pg", "--host", "127.0.0.1",
                 "--port", str(self.pg_port), "--region", REGION)  # fmt: skip
        kv = self.cli("keyvault", "create", "--name", "demo-kv", "--region", REGION)
        src = self.cli("keyvault", "secret", "set", "--vault-name", "demo-kv", "--name",
                       "shop-admin", stdin=secret_in)["properties"]["secretUri"]  # fmt: skip
        dst = self.cli("keyvault", "secret", "set", "--vault-name", "demo-kv", "--name",
                       "restorer", stdin=restorer)["properties"]["secretUri"]  # fmt: skip
        self.cli("vault", "create", "--name", "demo-vault", "--region", REGION)
        self.cli("policy", "create", "--vault-name", "demo-vault", "--name", "daily",
                 "--schedule", "daily")  # fmt: skip
        server = self.cli("server", "show", "--name", "demo-pg")
        for role, scope in (("Reader", server["id"]), ("Key Vault Secrets User", kv["id"])):
            self.cli("role", "assignment", "create", "--assignee", "vault:demo-vault",
                     "--role", role, "--scope", scope)  # fmt: skip
        self.cli("instance", "create", "--vault-name", "demo-vault", "--server", "demo-pg",
                 "--database", "shop", "--policy", "daily", "--secret", src, "--name", "shop")  # fmt: skip
        self.cli("backup", "now", "--vault-name", "demo-vault", "--instance", "shop", "--wait")
        points = self.cli("recovery-point", "list", "--vault-name", "demo-vault",
                          "--instance", "shop")["value"]  # fmt: skip
        point = points[0]["name"]
        self.cli("restore", "database", "--vault-name", "demo-vault", "--instance", "shop",
                 "--recovery-point", point, "--target-server", "demo-pg",
                 "--target-database", "shop_restored", "--secret", dst, "--wait")  # fmt: skip
        files = self.work / "files"
        files.mkdir()
        self.cli("storage-account", "create", "--name", "demofiles", "--region", REGION,
                 "--kind", "local", "--path", str(files))  # fmt: skip
        container = self.cli("storage-account", "container", "create", "--account-name",
                             "demofiles", "--name", "dumps")  # fmt: skip
        self.cli("role", "assignment", "create", "--assignee", "vault:demo-vault", "--role",
                 "Storage Blob Data Contributor", "--scope", container["id"])  # fmt: skip
        self.cli("restore", "files", "--vault-name", "demo-vault", "--instance", "shop",
                 "--recovery-point", point, "--container", container["properties"]["url"],
                 "--file-prefix", "shop/demo", "--wait")  # fmt: skip
        source, restored = self.psql(FINGERPRINT, "shop"), self.psql(FINGERPRINT, "shop_restored")
        written = sorted(p.name for p in (files / "dumps" / "shop").iterdir())
        self.report(source, restored, written)
        if source != restored:
            raise PgVaultError(
                "The restored database differs from the source.", code=Code.InternalError
            )

    def report(self, source: str, restored: str, written: Sequence[str]) -> None:
        self.say("\n== What the demo did")
        for step, took, job in self.timings:
            self.say(f"  {took:6.2f} s  {step}{'   → job ' + job if job else ''}")
        self.say(f"\n  source   database: {source}")
        self.say(f"  restored database: {restored}")
        self.say(f"  files written: {', '.join(written)}")
        self.say(
            "  OK: the restored database equals the source" if source == restored else "  MISMATCH"
        )

    def portal_hint(self) -> None:
        creds = self.work / "home" / "credentials.json"
        self.say(f"\n== Portal: {self.url}/")
        self.say(f"   Sign in as a service principal with the clientId and clientSecret in {creds}")
        self.say("   Press Ctrl-C to stop the demo (everything it created is removed).")

    def close(self) -> None:
        if self.serve is not None and self.serve.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.serve.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.serve.wait(timeout=15)
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            self._pg("pg_ctl", "-D", str(self.pg_dir), "-m", "immediate", "stop")
        shutil.rmtree(self.work, ignore_errors=True)


@contextlib.contextmanager
def demo(say: Any, api_port: int | None = None) -> Iterator[Demo]:
    """A demo run; a failed tool becomes an error with its output, and everything is removed."""
    d = Demo(say, api_port)
    try:
        yield d
    except subprocess.CalledProcessError as exc:
        tool = Path(str(exc.cmd[0] if exc.cmd else "?")).name
        raise PgVaultError(
            f"{tool} failed ({exc.returncode}): {(exc.stderr or '').strip()[-2000:]}",
            code=Code.InternalError,
        ) from None
    except OSError as exc:
        raise PgVaultError(f"The demo could not run: {exc}", code=Code.InternalError) from None
    finally:
        d.close()
