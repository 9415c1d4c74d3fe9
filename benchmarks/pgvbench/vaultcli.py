"""Drive pgvault end to end through its CLI against a live ``pgvault serve``.

Only the public CLI is used (no imports of pgvault), so the numbers include everything a user
waits for: CLI start-up, HTTP, job scheduling, pg_dump/pg_restore and storage.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cluster import Cluster, free_port
from .measure import CommandError, Op, RssSampler, Sample, dir_bytes, kill_group, run, tree_cpu

VAULT = "benchvault"
KEYVAULT = "benchkv"
SECRET = "srcsecret"
SOURCE = "src"
REGION = "eastus"
RESTORE_DB = "rt_vault"
HEALTH_TIMEOUT_S = 60.0

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)$")
_ISO_DURATION = re.compile(r"^PT(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?$")


class PgvaultError(RuntimeError):
    """pgvault misbehaved (CLI failed, job not Completed, bad JSON); the message says how."""


def parse_duration(value: str) -> float:
    """Seconds from a .NET TimeSpan ("[d.]hh:mm:ss[.fffffff]"), or ISO 8601 "PT#H#M#S"."""
    if m := _TIMESPAN.match(value.strip()):
        days, hours, minutes, seconds = m.groups()
        return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    if m := _ISO_DURATION.match(value.strip()):
        h, mi, s = (float(x or 0) for x in m.groups())
        return h * 3600 + mi * 60 + s
    raise PgvaultError(f"unparseable job duration {value!r}")


def find_pgvault(explicit: str | None) -> Path | None:
    """The console script: --pgvault, else next to this interpreter (the venv), else PATH."""
    if explicit:
        return Path(explicit)
    beside = Path(sys.executable).parent / "pgvault"
    if beside.exists():
        return beside
    found = shutil.which("pgvault")
    return Path(found) if found else None


@dataclass
class Vault:
    """A running ``pgvault serve`` plus the resources the benchmark created in it."""

    binary: Path
    home: Path
    cluster: Cluster
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    secret_uri: str = ""
    instance: str = ""
    recovery_point: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.home.parent / "pgvault-serve.log"

    @property
    def datastore(self) -> Path:
        return self.home / "datastore"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "pgvault serve is not running"
        return self.proc.pid

    def env(self) -> dict[str, str]:
        """Same PATH (PG 15 first) as the raw tools, so pgvault runs the same pg_dump."""
        return {
            **self.cluster.base_env(),
            "PGVAULT_HOME": str(self.home),
            "PGVAULT_URL": self.url,
        }

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start serve in its own session (so stop() can take its workers down too)."""
        self.home.mkdir(parents=True, exist_ok=True)
        argv = [str(self.binary), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise PgvaultError(
                    f"pgvault serve exited with rc={self.proc.returncode}\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise PgvaultError(
            f"pgvault serve not healthy after {HEALTH_TIMEOUT_S:.0f}s\n{self.log_tail()}"
        )

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc, grace_s=10)

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no serve log)"
        return "\n".join(text.splitlines()[-lines:])

    # --- CLI ---------------------------------------------------------------------------------

    def cli(self, *args: str, stdin: str | None = None) -> tuple[Any, float, float]:
        """Run ``pgvault ARGS``; returns (parsed JSON or None, wall s, CLI cpu s)."""
        argv = [str(self.binary), *args]
        try:
            res = run(
                argv,
                self.env(),
                stdin=stdin.encode() if stdin is not None else None,
                capture=True,
            )
        except CommandError as exc:
            raise PgvaultError(f"{exc}\n--- serve log tail ---\n{self.log_tail()}") from exc
        text = res.stdout.decode(errors="replace").strip()
        data: Any = None
        if "--output" in args:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise PgvaultError(
                    f"non-JSON output from {' '.join(argv)}: {text[:500]!r}"
                ) from exc
        return data, res.wall_s, res.cpu_s

    def setup(self) -> None:
        """Register the cluster, secret, vault, policy and backup instance (spec order)."""
        port = str(self.cluster.port)
        self.cli("server", "add", "--name", SOURCE, "--host", "127.0.0.1", "--port", port,
                 "--region", REGION)  # fmt: skip
        self.cli("keyvault", "create", "--name", KEYVAULT, "--region", REGION)
        conn = (
            f"Server=127.0.0.1;Port={port};Database=bench;User Id=postgres;"
            f"Password={self.cluster.password};"
        )
        secret, _, _ = self.cli("keyvault", "secret", "set", "--vault-name", KEYVAULT,
                                "--name", SECRET, "--output", "json", stdin=conn)  # fmt: skip
        self.secret_uri = _get(secret, "properties", "secretUri")
        self.cli("vault", "create", "--name", VAULT, "--region", REGION)
        self.cli("policy", "create", "--vault-name", VAULT, "--name", "daily")
        vault, _, _ = self.cli("vault", "show", "--name", VAULT, "--output", "json")
        group = "/".join(str(_get(vault, "id")).split("/")[:5])  # /subscriptions/S/resourceGroups/R
        for role in ("Reader", "Key Vault Secrets User"):  # what the vault's identity needs
            self.cli("role", "assignment", "create", "--assignee", f"vault:{VAULT}",
                     "--role", role, "--scope", group)  # fmt: skip
        inst, _, _ = self.cli("instance", "create", "--vault-name", VAULT, "--server", SOURCE,
                              "--database", "bench", "--policy", "daily",
                              "--secret", self.secret_uri, "--output", "json")  # fmt: skip
        self.instance = _get(inst, "name")

    # --- measured jobs -----------------------------------------------------------------------

    def _job(self, args: list[str]) -> tuple[dict[str, Any], Sample]:
        """Run one ``--wait`` job command, sampling serve's RSS and CPU around it."""
        store0, home0 = dir_bytes(self.datastore), dir_bytes(self.home)
        cpu0 = tree_cpu(self.pid)
        with RssSampler(self.pid) as rss:
            job, wall, cli_cpu = self.cli(*args, "--wait", "--output", "json")
        serve_cpu = tree_cpu(self.pid) - cpu0
        status = _get(job, "properties", "status")
        if status != "Completed":
            raise PgvaultError(f"job ended {status!r}: {json.dumps(job)[:2000]}")
        info = job["properties"].get("extendedInfo") or {}
        sample = Sample(
            wall_s=wall,
            cpu_s=cli_cpu + serve_cpu,
            extra={
                "stored_delta_bytes": float(dir_bytes(self.datastore) - store0),
                "job_s": parse_duration(_get(job, "properties", "duration")),
                "peak_rss_mb": rss.peak_mb,
                "start_rss_mb": rss.start_mb,
                "tree_peak_rss_mb": rss.tree_peak_mb,
                "cli_cpu_s": cli_cpu,
                "serve_cpu_s": serve_cpu,
                "home_delta_bytes": float(dir_bytes(self.home) - home0),
                "data_transferred_bytes": float(info.get("dataTransferredInBytes") or 0),
            },
        )
        return job, sample

    def backup(self) -> Sample:
        job, sample = self._job(
            ["backup", "now", "--vault-name", VAULT, "--instance", self.instance]
        )
        rp = (job["properties"].get("extendedInfo") or {}).get("sourceRecoverPoint") or {}
        self.recovery_point = rp.get("recoveryPointID") or self.recovery_point
        # Stored size = growth of $PGVAULT_HOME/datastore during this backup.
        sample.out_bytes = int(sample.extra["stored_delta_bytes"])
        return sample

    def latest_recovery_point(self) -> str:
        """Newest point per ``recovery-point list`` (latest first), to restore from."""
        data, _, _ = self.cli("recovery-point", "list", "--vault-name", VAULT,
                              "--instance", self.instance, "--output", "json")  # fmt: skip
        points = _get(data, "value")
        if not points:
            raise PgvaultError("recovery-point list is empty after backups")
        return str(points[0]["name"])

    def restore(self) -> Sample:
        _, sample = self._job([
            "restore", "database", "--vault-name", VAULT, "--instance", self.instance,
            "--recovery-point", self.recovery_point, "--target-server", SOURCE,
            "--target-database", RESTORE_DB, "--secret", self.secret_uri,
        ])  # fmt: skip
        return sample

    def backup_op(self) -> Op:
        return Op("pgvault_backup", "pgvault backup now", self.backup)

    def restore_op(self) -> Op:
        """dropdb of the target (untimed, + CHECKPOINT) before each run, like the raw restores."""
        return Op(
            "pgvault_restore",
            "pgvault restore database",
            self.restore,
            prepare=lambda: self.cluster.drop_database(RESTORE_DB),
        )


def _get(data: Any, *path: str) -> Any:
    """Walk a JSON path, turning a missing key into a PgvaultError that shows the document."""
    cur = data
    for key in path:
        if not isinstance(cur, dict) or key not in cur:
            raise PgvaultError(f"missing {'.'.join(path)} in {json.dumps(data)[:1000]}")
        cur = cur[key]
    return cur
