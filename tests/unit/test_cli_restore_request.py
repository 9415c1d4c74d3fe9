"""`pgvault restore database --restore-request FILE`: the JSON az writes, posted as it is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pgvault.cli import common
from pgvault.cli.main import app

AZ_REQUEST = {
    "object_type": "AzureBackupRecoveryPointBasedRestoreRequest",
    "recovery_point_id": "a2d7c7fe4e8a4dc2b3f1c0d9e8f7a6b5",
    "restore_target_info": {
        "datasource_auth_credentials": {
            "object_type": "SecretStoreBasedAuthCredentials",
            "secret_store_resource": {"secret_store_type": "AzureKeyVault", "uri": "https://kv/s"},
        },
        "datasource_info": {"resource_id": "/subscriptions/s/x/servers/pg1/databases/new"},
        "object_type": "RestoreTargetInfo",
        "recovery_option": "FailIfExists",
        "restore_location": "eastus",
    },
    "source_data_store_type": "VaultStore",
}


class Recorder:
    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []

    def default_subscription(self) -> str:
        return "s"

    def post(self, path: str, body: Any = None) -> Any:
        self.posts.append((path, body))
        return {}


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(common, "client", lambda: recorder)
    return recorder


BASE = ["restore", "database", "--vault-name", "v", "--instance", "i"]


def test_the_file_is_the_request(api: Recorder, tmp_path: Path) -> None:
    request = tmp_path / "restore.json"
    request.write_text(json.dumps(AZ_REQUEST))
    result = CliRunner().invoke(app, [*BASE, "--restore-request", str(request), "--validate-only"])
    assert result.exit_code == 0, result.output
    [(path, body)] = api.posts
    assert path.endswith("/backupVaults/v/backupInstances/i/validateRestore")
    assert body == {"restoreRequestObject": AZ_REQUEST}


@pytest.mark.parametrize(
    ("content", "extra", "code"),
    [
        (None, [], "InvalidRestoreRequest"),  # no such file
        ("{not json", [], "InvalidRestoreRequest"),
        ("[1, 2]", [], "InvalidRestoreRequest"),
        (json.dumps(AZ_REQUEST), ["--recovery-point", "p"], "BadParameter"),
    ],
)
def test_bad_restore_request_is_a_usage_error(
    api: Recorder, tmp_path: Path, content: str | None, extra: list[str], code: str
) -> None:
    request = tmp_path / "restore.json"
    if content is not None:
        request.write_text(content)
    result = CliRunner().invoke(app, [*BASE, "--restore-request", str(request), *extra])
    assert result.exit_code == 2, result.output
    assert f"error {code}: " in result.output
    assert "fix: " in result.output
    assert api.posts == []


def test_without_a_file_the_four_options_are_needed(api: Recorder) -> None:
    result = CliRunner().invoke(app, [*BASE, "--recovery-point", "p", "--target-server", "s"])
    assert result.exit_code == 2, result.output
    assert "error BadParameter: " in result.output
    assert "--restore-request" in result.output
    assert api.posts == []


def test_table_level_and_verify_first_become_pgvault_options(api: Recorder) -> None:
    args = [
        *BASE,
        "--recovery-point", "rp", "--target-server", "pg1", "--target-database", "part",
        "--secret", "https://kv/s", "--table", "app.orders", "--table", "app.lines",
        "--schema", "audit", "--verify-first", "--validate-only",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    [(_path, body)] = api.posts
    assert body["restoreRequestObject"]["pgvaultOptions"] == {
        "verifyFirst": True,
        "tables": ["app.orders", "app.lines"],
        "schemas": ["audit"],
    }


def test_no_options_no_extension(api: Recorder, tmp_path: Path) -> None:
    request = tmp_path / "restore.json"
    request.write_text(json.dumps(AZ_REQUEST))
    result = CliRunner().invoke(app, [*BASE, "--restore-request", str(request), "--validate-only"])
    assert result.exit_code == 0, result.output
    assert "pgvaultOptions" not in api.posts[0][1]["restoreRequestObject"]
