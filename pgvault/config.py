"""Settings, read once from the environment and passed down explicitly (no global)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import platformdirs


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("pgvault", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Where pgvault keeps its state and how it reaches its backends.

    Every field has an embedded default so that `pgvault serve` works with no
    configuration: SQLite metadata and a local datastore under `home`.
    """

    home: Path = field(default_factory=_default_home)
    database_url: str | None = None
    datastore_url: str | None = None
    archive_url: str | None = None
    master_key: str | None = None
    public_url: str | None = None
    workers: int = 2
    heartbeat_seconds: float = 5.0
    stale_after_seconds: float = 30.0
    scheduler_seconds: float = 20.0
    token_lifetime_seconds: int = 3600
    #: TLS for `pgvault serve` (PEM files; both or neither). Set: https, HSTS, https public URL.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Where local storage accounts may live (None: one folder under home, `storage-accounts`).
    local_storage_roots: tuple[Path, ...] | None = None
    #: Storage endpoints (CIDRs or host names) allowed even if loopback or private, and denied.
    storage_endpoint_allow: tuple[str, ...] = ()
    storage_endpoint_deny: tuple[str, ...] = ()
    # Bounded input (issue 8, finding 5/6): request bodies, who may forward the client's
    # host, how long audit and lockout rows live, how fast /oauth2/token may be called.
    max_body_bytes: int = 1 << 20
    trusted_proxies: tuple[str, ...] = ()
    audit_retention_days: int = 90
    audit_coalesce_seconds: int = 60
    token_rate_per_name: int = 30
    token_rate_per_address: int = 120
    token_rate_window_seconds: int = 60
    #: Log lines: "plain" (default) or "json" (one object a line, with request and job ids).
    log_format: str = "plain"
    # -- Job execution (issue 13, scale-out) ------------------------------------------------
    #: "embedded" (default: threads inside `pgvault serve`) or "procrastinate" (PostgreSQL
    #: metadata only: `pgvault worker` processes, any number, run the jobs).
    executor: str = "embedded"
    #: Concurrent jobs per server a backup reads (source) and a restore writes (target).
    source_server_concurrency: int = 1
    target_server_concurrency: int = 1
    #: Concurrent jobs over all workers (0: no limit beyond the workers' own concurrency).
    global_concurrency: int = 0
    #: Jobs one `pgvault worker` runs at once.
    worker_concurrency: int = 2
    #: New attempts after a worker is lost mid-job (backups only; 0: none).
    lost_job_retries: int = 2
    #: Scheduled backups due in one slot start spread over this many seconds (a fixed
    #: offset per instance), not all at the same second. 0: all at the slot (the default;
    #: production with many instances: e.g. 900). Keep it under the shortest schedule interval.
    schedule_spread_seconds: int = 0

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Build settings from `PGVAULT_*` variables; explicit overrides win."""
        env = os.environ
        values: dict[str, object] = {}
        if "PGVAULT_HOME" in env:
            values["home"] = Path(env["PGVAULT_HOME"])
        for key in ("database_url", "datastore_url", "archive_url", "master_key", "public_url"):
            name = f"PGVAULT_{key.upper()}"
            if env.get(name):
                values[key] = env[name]
        if env.get("PGVAULT_SCHEDULER_SECONDS"):
            values["scheduler_seconds"] = float(env["PGVAULT_SCHEDULER_SECONDS"])
        if env.get("PGVAULT_WORKERS"):
            values["workers"] = int(env["PGVAULT_WORKERS"])
        for key in ("tls_cert", "tls_key"):
            if env.get(f"PGVAULT_{key.upper()}"):
                values[key] = Path(env[f"PGVAULT_{key.upper()}"])
        if env.get("PGVAULT_LOCAL_STORAGE_ROOTS"):
            roots = env["PGVAULT_LOCAL_STORAGE_ROOTS"].split(os.pathsep)
            values["local_storage_roots"] = tuple(Path(r) for r in roots if r)
        for key in ("storage_endpoint_allow", "storage_endpoint_deny"):
            raw = env.get(f"PGVAULT_{key.upper()}", "")
            if raw:
                values[key] = tuple(v.strip() for v in raw.split(",") if v.strip())
        values.update(_limits_from_env(env))
        if env.get("PGVAULT_LOG_FORMAT"):
            fmt = env["PGVAULT_LOG_FORMAT"].strip().lower()
            if fmt not in ("plain", "json"):
                raise ValueError(f"PGVAULT_LOG_FORMAT must be plain or json, not {fmt!r}.")
            values["log_format"] = fmt
        values.update(_execution_from_env(env))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    @property
    def tls(self) -> bool:
        """Whether the service speaks https (a certificate is configured)."""
        return self.tls_cert is not None

    @property
    def audit_retention(self) -> timedelta:
        return timedelta(days=self.audit_retention_days)

    @property
    def metadata_url(self) -> str:
        """SQLAlchemy URL of the metadata database (SQLite under home by default)."""
        return self.database_url or f"sqlite:///{self.home / 'pgvault.db'}"

    @property
    def datastore(self) -> str:
        """URL of the vault datastore (a local directory under home by default)."""
        return self.datastore_url or (self.home / "datastore").as_uri()

    @property
    def archive(self) -> str:
        """URL of the archive tier (a separate local directory under home by default)."""
        return self.archive_url or (self.home / "archive").as_uri()

    @property
    def storage_roots(self) -> tuple[Path, ...]:
        """Directories that local storage accounts must live under."""
        if self.local_storage_roots is not None:
            return self.local_storage_roots
        return (self.home / "storage-accounts",)

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def credentials_file(self) -> Path:
        """The admin principal's client credentials, readable by the owner only."""
        return self.home / "credentials.json"


_INT_LIMITS = {
    "max_body_bytes": "PGVAULT_MAX_BODY_BYTES",
    "audit_retention_days": "PGVAULT_AUDIT_RETENTION_DAYS",
    "audit_coalesce_seconds": "PGVAULT_AUDIT_COALESCE_SECONDS",
    "token_rate_per_name": "PGVAULT_TOKEN_RATE_PER_NAME",
    "token_rate_per_address": "PGVAULT_TOKEN_RATE_PER_ADDRESS",
    "token_rate_window_seconds": "PGVAULT_TOKEN_RATE_WINDOW_SECONDS",
}


def _limits_from_env(env: os._Environ[str] | dict[str, str]) -> dict[str, object]:
    """The input limits: positive integers, and the trusted proxies (comma-separated
    addresses or networks, e.g. `10.0.0.5,192.168.0.0/24`)."""
    values: dict[str, object] = {}
    for key, name in _INT_LIMITS.items():
        if env.get(name):
            number = int(env[name])
            if number < 1:
                raise ValueError(f"{name} must be a positive integer, not {env[name]!r}.")
            values[key] = number
    if env.get("PGVAULT_TRUSTED_PROXIES"):
        proxies = tuple(p.strip() for p in env["PGVAULT_TRUSTED_PROXIES"].split(",") if p.strip())
        values["trusted_proxies"] = proxies
    return values


# -- Job execution (issue 13, scale-out): PGVAULT_EXECUTOR and the concurrency limits -----

EXECUTORS = ("embedded", "procrastinate")
_EXECUTION_INTS = {
    "source_server_concurrency": ("PGVAULT_SOURCE_SERVER_CONCURRENCY", 1),
    "target_server_concurrency": ("PGVAULT_TARGET_SERVER_CONCURRENCY", 1),
    "global_concurrency": ("PGVAULT_GLOBAL_CONCURRENCY", 0),
    "worker_concurrency": ("PGVAULT_WORKER_CONCURRENCY", 1),
    "lost_job_retries": ("PGVAULT_LOST_JOB_RETRIES", 0),
    "schedule_spread_seconds": ("PGVAULT_SCHEDULE_SPREAD_SECONDS", 0),
}
_EXECUTION_FLOATS = {
    "heartbeat_seconds": "PGVAULT_HEARTBEAT_SECONDS",
    "stale_after_seconds": "PGVAULT_STALE_AFTER_SECONDS",
}


def _execution_from_env(env: os._Environ[str] | dict[str, str]) -> dict[str, object]:
    """The executor, its limits (integers with a floor) and the heartbeat timings."""
    values: dict[str, object] = {}
    if env.get("PGVAULT_EXECUTOR"):
        executor = env["PGVAULT_EXECUTOR"].strip().lower()
        if executor not in EXECUTORS:
            raise ValueError(
                f"PGVAULT_EXECUTOR must be embedded or procrastinate, not {executor!r}."
            )
        values["executor"] = executor
    for key, (name, floor) in _EXECUTION_INTS.items():
        if env.get(name):
            number = int(env[name])
            if number < floor:
                raise ValueError(f"{name} must be an integer >= {floor}, not {env[name]!r}.")
            values[key] = number
    for key, name in _EXECUTION_FLOATS.items():
        if env.get(name):
            seconds = float(env[name])
            if seconds <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {env[name]!r}.")
            values[key] = seconds
    return values
