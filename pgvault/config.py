"""Settings, read once from the environment and passed down explicitly (no global)."""

from __future__ import annotations

import os
import re
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
    #: Key Vault data plane by host, as Azure's `https://KV.vault.azure.net/`: with a suffix
    #: such as `vault.pgvault.example` (wildcard DNS and certificate pointing here), a key
    #: vault's vaultUri is `https://KV.SUFFIX[:PORT]/`, which the Key Vault SDKs and az need.
    #: None: vaultUri is `PUBLIC_URL/keyvaults/KV/` (pgvault's own clients only).
    keyvault_dns_suffix: str | None = None

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
        if env.get("PGVAULT_KEYVAULT_DNS_SUFFIX"):
            values["keyvault_dns_suffix"] = keyvault_suffix(env["PGVAULT_KEYVAULT_DNS_SUFFIX"])
        if env.get("PGVAULT_LOG_FORMAT"):
            fmt = env["PGVAULT_LOG_FORMAT"].strip().lower()
            if fmt not in ("plain", "json"):
                raise ValueError(f"PGVAULT_LOG_FORMAT must be plain or json, not {fmt!r}.")
            values["log_format"] = fmt
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
