"""The TOML config file: where it is found, what wins over it, and clear refusals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pgvault.config import FILE_KEYS, KINDS, Settings
from pgvault.errors import Code, ConfigError

FULL = """
[service]
database_url = "postgresql://pgvault@db/pgvault"
datastore_url = "s3://backups/pgvault"
public_url = "https://vault.example.com"
log_format = "JSON"
api_threads = 12

[tls]
cert = "/etc/pgvault/tls.crt"
key = "/etc/pgvault/tls.key"

[storage]
local_roots = ["/srv/a", "/srv/b"]
endpoint_allow = ["10.0.0.0/8"]

[limits]
max_body_bytes = 2048
trusted_proxies = ["10.0.0.5"]

[jobs]
workers = 4
heartbeat_seconds = 2.5
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No PGVAULT_* from the test runner; the home is a fresh directory."""
    import os

    for name in list(os.environ):
        if name.startswith("PGVAULT_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("PGVAULT_HOME", str(home))
    return home


def test_home_file_is_read(clean_env: Path) -> None:
    (clean_env / "pgvault.toml").write_text(FULL)
    st = Settings.from_env()
    assert st.database_url == "postgresql://pgvault@db/pgvault"
    assert st.datastore_url == "s3://backups/pgvault"
    assert st.log_format == "json"
    assert st.api_threads == 12
    assert (st.tls_cert, st.tls_key) == (Path("/etc/pgvault/tls.crt"), Path("/etc/pgvault/tls.key"))
    assert st.local_storage_roots == (Path("/srv/a"), Path("/srv/b"))
    assert st.storage_endpoint_allow == ("10.0.0.0/8",)
    assert st.max_body_bytes == 2048
    assert st.trusted_proxies == ("10.0.0.5",)
    assert st.workers == 4
    assert st.heartbeat_seconds == 2.5
    assert st.home == clean_env


def test_precedence_option_over_env_over_file_over_default(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / "pgvault.toml").write_text(FULL)
    monkeypatch.setenv("PGVAULT_WORKERS", "6")
    monkeypatch.setenv("PGVAULT_MAX_BODY_BYTES", "4096")
    monkeypatch.setenv("PGVAULT_TRUSTED_PROXIES", "192.168.0.0/24, 10.0.0.9")
    st = Settings.from_env(workers=9)
    assert st.workers == 9  # the option
    assert st.max_body_bytes == 4096  # the variable over the file
    assert st.trusted_proxies == ("192.168.0.0/24", "10.0.0.9")
    assert st.api_threads == 12  # the file
    assert st.audit_retention_days == Settings().audit_retention_days  # the default


def test_pgvault_config_names_the_file_and_its_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "etc" / "pgvault.toml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(f'[service]\nhome = "{tmp_path / "state"}"\n[jobs]\nworkers = 0\n')
    monkeypatch.delenv("PGVAULT_HOME")
    monkeypatch.setenv("PGVAULT_CONFIG", str(elsewhere))
    st = Settings.from_env()
    assert st.home == tmp_path / "state"
    assert st.workers == 0

    monkeypatch.setenv("PGVAULT_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"PGVAULT_CONFIG names .*missing\.toml"):
        Settings.from_env()


def test_no_file_means_defaults(clean_env: Path) -> None:
    assert Settings.from_env().workers == Settings().workers


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[service\n", "is not valid TOML"),
        ("[server]\nport = 1\n", r"unknown table \[server\]"),
        (
            "[limits]\nmax_body = 5\n",
            "unknown key 'max_body' in \\[limits\\]; its keys are max_body_bytes",
        ),
        (
            "[limits]\nmax_body_bytes = 0\n",
            r"\[limits\] max_body_bytes must be a positive integer, not 0",
        ),
        ('[limits]\nmax_body_bytes = "1M"\n', "must be a positive integer, not '1M'"),
        ("[jobs]\nworkers = true\n", "workers must be a whole number"),
        ("[jobs]\nheartbeat_seconds = -1\n", "a positive number of seconds"),
        ('[service]\nlog_format = "xml"\n', 'must be "plain" or "json"'),
        ('[storage]\nlocal_roots = "/srv"\n', "a list of non-empty strings"),
        ('[executor]\nbackend = "procrastinate"\n', "unknown key 'backend' in \\[executor\\]"),
    ],
)
def test_bad_file_values_are_refused_by_name(clean_env: Path, text: str, message: str) -> None:
    (clean_env / "pgvault.toml").write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        Settings.from_env()
    assert caught.value.code == Code.ConfigInvalid
    assert str(clean_env / "pgvault.toml") in caught.value.message


def test_bad_env_values_are_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGVAULT_MAX_BODY_BYTES", "lots")
    with pytest.raises(ConfigError, match="PGVAULT_MAX_BODY_BYTES must be a positive integer"):
        Settings.from_env()
    monkeypatch.delenv("PGVAULT_MAX_BODY_BYTES")
    monkeypatch.setenv("PGVAULT_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="PGVAULT_LOG_FORMAT"):  # still a ValueError too
        Settings.from_env()


def test_a_master_key_in_a_file_others_can_read_is_refused(clean_env: Path) -> None:
    path = clean_env / "pgvault.toml"
    path.write_text('[service]\nmaster_key = "' + "ab" * 32 + '"\n')
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Settings.from_env()
    path.chmod(0o600)
    assert Settings.from_env().master_key == "ab" * 32


def test_every_field_has_a_place() -> None:
    """Each setting is reachable from the file (or is derived), and has a known kind or is text."""
    in_file = {name for keys in FILE_KEYS.values() for name in keys.values()}
    from dataclasses import fields

    assert {f.name for f in fields(Settings)} == in_file
    assert set(KINDS) <= in_file


EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "pgvault.toml.example"


def test_the_example_file_documents_every_key_and_parses(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy/pgvault.toml.example shows every key of every table (commented out), and with
    each one uncommented it is a valid config: the shipped example cannot drift."""
    lines = EXAMPLE.read_text().splitlines()
    uncommented = [re.sub(r"^# ([a-z_]+ = )", r"\1", line) for line in lines]
    tables: dict[str, set[str]] = {}
    table = ""
    for line in uncommented:
        if line.startswith("["):
            table = line.strip("[]")
        elif (key := re.match(r"^([a-z_]+) = ", line)) is not None:
            tables.setdefault(table, set()).add(key.group(1))
    documented = {name: set(keys) for name, keys in FILE_KEYS.items()}
    documented["service"].remove("master_key")  # named in the header: keep it out of the file
    assert "master_key" in "\n".join(lines[:8])
    assert tables == documented
    (clean_env / "full.toml").write_text("\n".join(uncommented))
    monkeypatch.setenv("PGVAULT_CONFIG", str(clean_env / "full.toml"))
    st = Settings.from_env()
    assert st.api_concurrency == 2
    assert st.database_url == "postgresql://pgvault@db.internal/pgvault"
