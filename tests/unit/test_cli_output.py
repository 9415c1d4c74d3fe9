"""The CLI prints as `az` does: --output json|jsonc|table|tsv|yaml|none and --query (JMESPath).

The commands are the real ones (their columns, their paths) over a fake API client.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from pgvault.cli import common, output
from pgvault.cli.main import app

POINT_ID = "a2d7c7fe4e8a4dc2b3f1c0d9e8f7a6b5"
POINT = {
    "id": f"/subscriptions/s/resourceGroups/default/providers/x/recoveryPoints/{POINT_ID}",
    "name": POINT_ID,
    "type": "Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints",
    "properties": {
        "objectType": "AzureBackupDiscreteRecoveryPoint",
        "recoveryPointTime": "2026-11-30T22:45:08.123456Z",
        "recoveryPointDataStoresDetails": [{"type": "VaultStore"}, {"type": "ArchiveStore"}],
        "retentionTagName": "Default",
        "storedBytes": 123456789,
        "expiryTime": None,
    },
}
OTHER = {**POINT, "name": "0" * 32, "properties": {**POINT["properties"], "storedBytes": 7}}
JOB_ID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
PRINCIPAL = {
    "name": "backup-operator-sp",
    "properties": {
        "principalType": "ServicePrincipal",
        "principalId": "11111111-2222-3333-4444-555555555555",
        "clientId": "66666666-7777-8888-9999-000000000000",
    },
}


class FakeClient:
    """Answers GETs from a dict of path suffix -> body; records nothing else."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers

    def default_subscription(self) -> str:
        return "s"

    def get(self, path: str, **params: Any) -> Any:
        for suffix, body in self.answers.items():
            if path.endswith(suffix):
                return json.loads(json.dumps(body))
        raise AssertionError(f"unexpected GET {path}")


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {
        "/recoveryPoints": {"value": [POINT, OTHER]},
        f"/recoveryPoints/{POINT_ID}": POINT,
        "/backupJobs": {
            "value": [
                {
                    "name": JOB_ID,
                    "properties": {
                        "operation": "OnDemandBackup",
                        "status": "Completed",
                        "progress": {"phase": "Uploading"},
                        "backupInstanceFriendlyName": "server1\\shop",
                        "startTime": "2026-11-30T22:45:08.123456Z",
                        "duration": "PT1M2.5S",
                    },
                }
            ]
        },
        "/pgvault/principals": {"value": [PRINCIPAL]},
    }
    monkeypatch.setattr(common, "client", lambda: FakeClient(answers))
    monkeypatch.setattr(output.out, "_width", 80)  # an 80-column terminal


RP = ["recovery-point", "list", "--vault-name", "v", "--instance", "i"]
RP_SHOW = ["recovery-point", "show", "--vault-name", "v", "--instance", "i"]


def _run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def _listed(point: dict[str, Any]) -> dict[str, Any]:
    """A point as `recovery-point list` returns it (with its tiers joined)."""
    return {**point, "properties": {**point["properties"], "tier": "VaultStore+ArchiveStore"}}


LISTED = {"value": [_listed(POINT), _listed(OTHER)]}


def test_json_is_the_answer_unchanged(api: None) -> None:
    assert _run(*RP, "-o", "json") == json.dumps(LISTED, indent=2) + "\n"
    shown = _run(*RP_SHOW, "--recovery-point", POINT_ID, "-o", "json")
    assert shown == json.dumps(POINT, indent=2) + "\n"


def test_query_applies_to_the_list_items(api: None) -> None:
    assert json.loads(_run(*RP, "--query", "[].name", "-o", "json")) == [POINT_ID, "0" * 32]
    picked = _run(*RP, "--query", "[?properties.storedBytes > `10`].{id: name}", "-o", "json")
    assert json.loads(picked) == [{"id": POINT_ID}]


def test_query_applies_to_one_resource(api: None) -> None:
    shown = _run(*RP_SHOW, "--recovery-point", POINT_ID, "--query", "properties.retentionTagName")
    assert "Result" in shown
    assert "Default" in shown
    as_json = _run(*RP_SHOW, "--recovery-point", POINT_ID, "--query", "name", "-o", "json")
    assert json.loads(as_json) == POINT_ID


def test_tsv_one_row_per_item_values_in_order_nested_skipped(api: None) -> None:
    rows = _run(*RP, "-o", "tsv").splitlines()
    assert rows == [
        f"{POINT['id']}\t{POINT_ID}\t{POINT['type']}",
        f"{POINT['id']}\t{'0' * 32}\t{POINT['type']}",
    ]
    picked = _run(*RP, "--query", "[].[name, properties.storedBytes]", "-o", "tsv")
    assert picked.splitlines() == [f"{POINT_ID}\t123456789", f"{'0' * 32}\t7"]
    props = _run(*RP_SHOW, "--recovery-point", POINT_ID, "--query", "properties", "-o", "tsv")
    # dict values in order; the list of data stores skipped; None printed empty
    assert (
        props
        == "AzureBackupDiscreteRecoveryPoint\t2026-11-30T22:45:08.123456Z\tDefault\t123456789\t\n"
    )


def test_yaml_is_the_same_data(api: None) -> None:
    assert yaml.safe_load(_run(*RP, "-o", "yaml")) == LISTED
    assert yaml.safe_load(_run(*RP, "--query", "[0].name", "-o", "yaml")) == POINT_ID


def test_jsonc_is_coloured_json(api: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)  # NO_COLOR and a dumb terminal turn it off
    monkeypatch.setenv("TERM", "xterm-256color")
    printed = _run(*RP_SHOW, "--recovery-point", POINT_ID, "-o", "jsonc")
    assert "\x1b[" in printed
    assert json.loads(re.sub(r"\x1b\[[0-9;]*m", "", printed)) == POINT


def test_none_prints_nothing(api: None) -> None:
    assert _run(*RP, "-o", "none") == ""
    assert _run(*RP, "-o", "none", "--query", "[].name") == ""


def test_table_of_a_query_has_its_keys_as_columns(api: None) -> None:
    printed = _run(*RP, "--query", "[].{point: name, bytes: properties.storedBytes}")
    assert "Point" in printed
    assert "Bytes" in printed
    assert POINT_ID in printed
    assert "123456789" in printed


@pytest.mark.parametrize("query", ["[", "[?name ==", "foo(", "`unterminated"])
def test_invalid_query_is_a_usage_error(api: None, query: str) -> None:
    result = CliRunner().invoke(app, [*RP, "--query", query])
    assert result.exit_code == 2, result.output
    assert "error InvalidQuery: " in result.output
    assert "fix: " in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "ids"),
    [
        (RP, [POINT_ID, "0" * 32]),
        (["job", "list", "--vault-name", "v"], [JOB_ID]),
        (["principal", "list"], ["backup-operator-sp", PRINCIPAL["properties"]["principalId"]]),
    ],
)
def test_table_never_cuts_an_id_at_80_columns(api: None, args: list[str], ids: list[str]) -> None:
    printed = _run(*args)
    assert max(len(line) for line in printed.splitlines()) <= 80
    for value in ids:
        assert value in printed  # on one line, copyable


def test_an_id_too_long_for_one_line_folds_whole(api: None) -> None:
    """Both principal and client ids cannot sit on one 80-column line: the last folds."""
    printed = _run("principal", "list")
    client_id = PRINCIPAL["properties"]["clientId"]
    cells = [line.split("│")[4].strip() for line in printed.splitlines() if line.startswith("│")]
    assert "".join(cells) == client_id
    assert "…" not in "".join(cells)


def test_every_output_format_is_offered() -> None:
    help_text = CliRunner().invoke(app, ["vault", "list", "--help"]).output
    for word in ("--query", "--output", "json", "jsonc", "table", "tsv", "yaml", "none"):
        assert word in help_text
