"""Expected failures print `error CODE: message` and `fix: …`, exit 1, and no traceback.

One command of every command group runs as a real `pgvault` process against a stopped
service (a free loopback port with nothing listening) and against an empty PGVAULT_HOME.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import _SERVICE_VARS, PGVAULT_BIN

#: One command of each group: (group, argv). Secrets go on stdin, as the CLI requires.
COMMANDS: list[tuple[str, list[str]]] = [
    ("vault", ["vault", "list"]),
    ("policy", ["policy", "list", "--vault-name", "v1"]),
    ("instance", ["instance", "list", "--vault-name", "v1"]),
    ("backup", ["backup", "now", "--vault-name", "v1", "--instance", "i1"]),
    ("recovery-point", ["recovery-point", "list", "--vault-name", "v1", "--instance", "i1"]),
    ("restore", ["restore", "database", "--vault-name", "v1", "--instance", "i1",
                 "--recovery-point", "p1", "--target-server", "s1", "--target-database", "d1",
                 "--secret", "https://kv1.vault.local/secrets/s1"]),
    ("job", ["job", "list", "--vault-name", "v1"]),
    ("server", ["server", "list"]),
    ("keyvault", ["keyvault", "list"]),
    ("keyvault secret", ["keyvault", "secret", "set", "--vault-name", "kv1", "--name", "s1"]),
    ("storage-account", ["storage-account", "list"]),
    ("storage-account container", ["storage-account", "container", "list",
                                   "--account-name", "sa1"]),
    ("principal", ["principal", "list"]),
    ("role definition", ["role", "definition", "list"]),
    ("role assignment", ["role", "assignment", "list"]),
    ("audit", ["audit", "list"]),
    ("auth token", ["auth", "token"]),
    ("login", ["login", "--client-id", "00000000-0000-0000-0000-000000000001"]),
]  # fmt: skip


def _free_port() -> int:
    """A loopback port nothing listens on (bound once to find it, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(argv: list[str], home: Path, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _SERVICE_VARS}
    env.update({"PGVAULT_HOME": str(home), "PGVAULT_URL": url, "NO_COLOR": "1", "COLUMNS": "80"})
    return subprocess.run(
        [PGVAULT_BIN, *argv],
        env=env,
        input="a-secret\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _assert_clean_failure(result: subprocess.CompletedProcess[str], code: str) -> None:
    printed = result.stdout + result.stderr
    assert result.returncode == 1, printed
    assert "Traceback" not in printed
    assert f"error {code}: " in result.stderr, printed
    assert "fix: " in result.stderr, printed
    # only the error and its fix, nothing else
    assert len(result.stderr.strip().splitlines()) == 2, printed


@pytest.mark.parametrize(("group", "argv"), COMMANDS, ids=[g for g, _ in COMMANDS])
def test_stopped_service_prints_error_and_fix(tmp_path: Path, group: str, argv: list[str]) -> None:
    """Credentials present, nothing listening: ServiceUnreachable, exit 1."""
    (tmp_path / "credentials.json").write_text(
        json.dumps({"clientId": "00000000-0000-0000-0000-000000000002", "clientSecret": "x"})
    )
    result = _run(argv, tmp_path, f"http://127.0.0.1:{_free_port()}")
    _assert_clean_failure(result, "ServiceUnreachable")
    assert "Cannot reach pgvault at http://127.0.0.1:" in result.stderr


@pytest.mark.parametrize(("group", "argv"), COMMANDS, ids=[g for g, _ in COMMANDS])
def test_empty_home_prints_error_and_fix(tmp_path: Path, group: str, argv: list[str]) -> None:
    """No credentials under PGVAULT_HOME (and no service): NoCredentials, exit 1.

    `login` with a client id needs no stored credentials: it fails on the stopped service.
    """
    result = _run(argv, tmp_path / "empty", f"http://127.0.0.1:{_free_port()}")
    _assert_clean_failure(result, "ServiceUnreachable" if group == "login" else "NoCredentials")


def test_invalid_query_is_a_usage_error(tmp_path: Path) -> None:
    result = _run(["vault", "list", "--query", "[?"], tmp_path, "http://127.0.0.1:9")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error InvalidQuery: " in result.stderr
    assert "fix: " in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
