"""Settings, read once from the config file and the environment and passed down explicitly
(no global). Precedence: command-line options, `PGVAULT_*` variables, the TOML config file,
the defaults."""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path

import platformdirs

from pgvault.errors import ConfigError


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
    #: A scheduled backup queued this late after its slot alerts its vault as a missed schedule.
    missed_schedule_seconds: int = 600
    #: Threads serving API calls (sync routes); more only add GIL contention (api_load.py).
    api_threads: int = 8
    #: Calls of one API process that run at once, per lane (reads; writes and actions); the
    #: rest wait their turn in the event loop. More at once only add GIL contention
    #: (benchmarks/api_load.py); a lane each, so a slow validation never blocks the reads.
    api_concurrency: int = 2
    #: Connections of one backup (tables dumped at once) and one restore (`pg_restore -j`);
    #: 0: the machine's cores.
    jobs: int = 0
    #: Recovery-point format new backups write: 2 (one object per table, parallel) or 1 (one
    #: custom-format stream, as before 2026-12).
    backup_format: int = 2
    #: API processes of one `serve` (uvicorn workers on one socket); only the first runs the
    #: executor and scheduler. Raise it when one process's core is the limit (README).
    api_processes: int = 1
    #: The deployment's regions, pairs and per-region datastores (JSON; see regions.parse).
    regions_file: Path | None = None
    #: Seconds a new recovery point waits before it is replicated (0: at once), to batch traffic.
    replication_delay_seconds: float = 0.0
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
    #: Key Vault data plane by host, as Azure's `https://KV.vault.azure.net/`: with a suffix
    #: such as `vault.pgvault.example` (wildcard DNS and certificate pointing here), a key
    #: vault's vaultUri is `https://KV.SUFFIX[:PORT]/`, which the Key Vault SDKs and az need.
    #: None: vaultUri is `PUBLIC_URL/keyvaults/KV/` (pgvault's own clients only).
    keyvault_dns_suffix: str | None = None

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Build settings: explicit overrides (command-line options) win over `PGVAULT_*`
        variables, which win over the config file, which wins over the defaults.

        The config file is `PGVAULT_CONFIG`, else `$PGVAULT_HOME/pgvault.toml` if it exists
        (README, Configuration). A bad key or value raises `ConfigError` naming it."""
        env = os.environ
        values: dict[str, object] = {}
        home = overrides.get("home") or env.get("PGVAULT_HOME") or _default_home()
        values.update(_from_file(config_path(env, Path(str(home)))))
        values.update(_from_env(env))
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

    def region_datastores(
        self, region: str, datastore: str | None, archive: str | None
    ) -> tuple[str, str]:
        """URLs of a region's vault and archive tiers where the regions file names none."""
        base = self.home / "regions" / region
        return (datastore or (base / "datastore").as_uri(), archive or (base / "archive").as_uri())

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


# -- the config file and the environment ------------------------------------------------------

#: The config file's tables and keys, and the Settings field each sets. Every field can also be
#: set by `PGVAULT_<FIELD>` (e.g. `PGVAULT_MAX_BODY_BYTES`), which wins over the file.
FILE_KEYS: dict[str, dict[str, str]] = {
    "service": {
        "home": "home",
        "database_url": "database_url",
        "datastore_url": "datastore_url",
        "archive_url": "archive_url",
        "public_url": "public_url",
        "master_key": "master_key",
        "log_format": "log_format",
        "api_threads": "api_threads",
        "api_concurrency": "api_concurrency",
        "api_processes": "api_processes",
        "token_lifetime_seconds": "token_lifetime_seconds",
        "keyvault_dns_suffix": "keyvault_dns_suffix",
    },
    "tls": {"cert": "tls_cert", "key": "tls_key"},
    "storage": {
        "local_roots": "local_storage_roots",
        "endpoint_allow": "storage_endpoint_allow",
        "endpoint_deny": "storage_endpoint_deny",
    },
    "limits": {
        "max_body_bytes": "max_body_bytes",
        "trusted_proxies": "trusted_proxies",
        "audit_retention_days": "audit_retention_days",
        "audit_coalesce_seconds": "audit_coalesce_seconds",
        "token_rate_per_name": "token_rate_per_name",
        "token_rate_per_address": "token_rate_per_address",
        "token_rate_window_seconds": "token_rate_window_seconds",
    },
    "jobs": {
        "workers": "workers",
        "heartbeat_seconds": "heartbeat_seconds",
        "stale_after_seconds": "stale_after_seconds",
        "scheduler_seconds": "scheduler_seconds",
        "missed_schedule_seconds": "missed_schedule_seconds",
        "parallel": "jobs",
        "backup_format": "backup_format",
    },
    "regions": {"file": "regions_file", "replication_delay_seconds": "replication_delay_seconds"},
    #: The job executor (README, "Workers on several machines").
    "executor": {
        "executor": "executor",
        "worker_concurrency": "worker_concurrency",
        "source_server_concurrency": "source_server_concurrency",
        "target_server_concurrency": "target_server_concurrency",
        "global_concurrency": "global_concurrency",
        "lost_job_retries": "lost_job_retries",
        "schedule_spread_seconds": "schedule_spread_seconds",
    },
}

#: How a field's value is read (file values must already have the type; env values are text).
#: path, paths (file: list; env: os.pathsep-separated), strs (file: list; env: comma-separated),
#: int (>= 1), count (>= 0), seconds (> 0, float), delay (>= 0, float), backup_format (1, 2),
#: log_format...; anything else: str.
KINDS: dict[str, str] = {
    "home": "path",
    "tls_cert": "path",
    "tls_key": "path",
    "local_storage_roots": "paths",
    "storage_endpoint_allow": "strs",
    "storage_endpoint_deny": "strs",
    "trusted_proxies": "strs",
    "workers": "count",
    "api_threads": "int",
    "api_concurrency": "int",
    "api_processes": "int",
    "token_lifetime_seconds": "int",
    "max_body_bytes": "int",
    "audit_retention_days": "int",
    "audit_coalesce_seconds": "int",
    "token_rate_per_name": "int",
    "token_rate_per_address": "int",
    "token_rate_window_seconds": "int",
    "missed_schedule_seconds": "int",
    "heartbeat_seconds": "seconds",
    "stale_after_seconds": "seconds",
    "scheduler_seconds": "seconds",
    "log_format": "log_format",
    "regions_file": "path",
    "jobs": "count",
    "backup_format": "backup_format",
    "replication_delay_seconds": "delay",
    "executor": "executor",
    "worker_concurrency": "int",
    "source_server_concurrency": "int",
    "target_server_concurrency": "int",
    "global_concurrency": "count",
    "lost_job_retries": "count",
    "schedule_spread_seconds": "count",
    "keyvault_dns_suffix": "keyvault_suffix",
}


_SUFFIX = re.compile(r"^vault(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")


def keyvault_suffix(text: str) -> str:
    """A DNS suffix for key vault hosts: lower-case labels, the first one `vault` (as in
    `vault.azure.net`), so `https://KV.SUFFIX/secrets/NAME` reads as a key-vault secret URI."""
    suffix = text.strip().strip(".").lower()
    if not _SUFFIX.match(suffix):
        raise ValueError(
            f"PGVAULT_KEYVAULT_DNS_SUFFIX must be a DNS name starting with 'vault.', "
            f"e.g. vault.pgvault.example, not {text!r}."
        )
    return suffix


def config_path(env: os._Environ[str] | dict[str, str], home: Path) -> Path | None:
    """`PGVAULT_CONFIG` (which must exist), else `HOME/pgvault.toml` if present, else None."""
    named = env.get("PGVAULT_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"PGVAULT_CONFIG names {path}, which is not a readable file.")
        return path
    default = home / "pgvault.toml"
    return default if default.is_file() else None


def _from_file(path: Path | None) -> dict[str, object]:
    """The settings a TOML config file sets; unknown tables or keys and bad values refuse."""
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read the config file {path}: {exc}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"The config file {path} is not valid TOML: {exc}.") from None
    values: dict[str, object] = {}
    for table, keys in data.items():
        known = FILE_KEYS.get(table)
        if known is None or not isinstance(keys, dict):
            raise ConfigError(
                f"{path}: unknown table [{table}]; the tables are "
                + ", ".join(f"[{t}]" for t in FILE_KEYS)
                + "."
            )
        for key, value in keys.items():
            if key not in known:
                raise ConfigError(
                    f"{path}: unknown key {key!r} in [{table}]; its keys are "
                    + (", ".join(known) or "none yet")
                    + "."
                )
            name = known[key]
            values[name] = _typed(name, value, f"{path}: [{table}] {key}")
    if "master_key" in values and stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise ConfigError(
            f"The config file {path} holds master_key and is open to other users; make it "
            f"readable by its owner only (chmod 600 {path}) or move the key to PGVAULT_MASTER_KEY."
        )
    return values


def _from_env(env: os._Environ[str] | dict[str, str]) -> dict[str, object]:
    """The settings `PGVAULT_<FIELD>` variables set (empty ones are ignored, but PGVAULT_HOME)."""
    values: dict[str, object] = {}
    if "PGVAULT_HOME" in env:
        values["home"] = Path(env["PGVAULT_HOME"])
    for f in fields(Settings):
        name = f"PGVAULT_{f.name.upper()}"
        if f.name != "home" and env.get(name):
            values[f.name] = _typed(f.name, _env_value(f.name, env[name]), name)
    return values


def _env_value(field_name: str, text: str) -> object:
    """Text of a variable, split into a list for list kinds; numbers are parsed by `_typed`."""
    kind = KINDS.get(field_name, "str")
    if kind == "paths":
        return [p for p in text.split(os.pathsep) if p]
    if kind == "strs":
        return [v.strip() for v in text.split(",") if v.strip()]
    if kind in ("int", "count", "backup_format"):
        try:
            return int(text)
        except ValueError:
            return text
    if kind in ("seconds", "delay"):
        try:
            return float(text)
        except ValueError:
            return text
    return text


def _typed(field_name: str, value: object, where: str) -> object:
    """`value` as the field's kind, or ConfigError naming `where` and what is expected."""
    kind = KINDS.get(field_name, "str")

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where} must be {expected}, not {value!r}.")

    if kind in ("int", "count"):
        low = 1 if kind == "int" else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise bad("a positive integer" if low else "a whole number, 0 or more")
        return value
    if kind == "backup_format":
        if isinstance(value, bool) or value not in (1, 2):
            raise bad("1 or 2")
        return value
    if kind == "delay":
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise bad("a number of seconds, 0 or more")
        return float(value)
    if kind == "seconds":
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise bad("a positive number of seconds")
        return float(value)
    if kind in ("paths", "strs"):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise bad("a list of non-empty strings")
        return tuple(Path(v) for v in value) if kind == "paths" else tuple(value)
    if not isinstance(value, str) or not value:
        raise bad("a non-empty string")
    if kind == "path":
        return Path(value)
    if kind == "log_format":
        fmt = value.strip().lower()
        if fmt not in ("plain", "json"):
            raise bad('"plain" or "json"')
        return fmt
    if kind == "keyvault_suffix":
        try:
            return keyvault_suffix(value)
        except ValueError as exc:
            raise bad("a DNS name starting with 'vault.', e.g. vault.pgvault.example") from exc
    if kind == "executor":
        executor = value.strip().lower()
        if executor not in EXECUTORS:
            raise bad('"embedded" or "procrastinate"')
        return executor
    return value


EXECUTORS = ("embedded", "procrastinate")
