"""The CLI's command factory: shared options, the error handler and printing, in one place."""

from __future__ import annotations

import json
from typing import Annotated, Any

import pytest
import typer
from typer.testing import CliRunner

from pgvault.cli.client import ApiError, Client
from pgvault.cli.common import Call, Scope, command


def _app() -> typer.Typer:
    app = typer.Typer()

    @command(app, "show", columns=(("Name", "name"),))
    def show(call: Call, name: Annotated[str, typer.Option("--name", "-n")]) -> Any:
        """Show a thing."""
        return {"name": name, "where": call.group(), "output": call.output}

    @command(app, "fail", scope=Scope.none, output=False)
    def fail(call: Call) -> None:
        """Always fails."""
        raise ApiError("Nope", "It failed.", "Do something else.")

    @command(app, "audit", scope=Scope.subscription)
    def audit(call: Call) -> Any:
        """Subscription only."""
        return {"name": call.subscription_path()}

    return app


def _run(*args: str) -> Any:
    return CliRunner().invoke(_app(), list(args))


def test_shared_options_come_last_in_help() -> None:
    help_text = _run("show", "--help").output
    order = [help_text.index(opt) for opt in ("--name", "--output", "--subscription", "-g")]
    assert order == sorted(order)
    assert "Show a thing." in help_text


@pytest.mark.parametrize(
    ("command_name", "present", "absent"),
    [
        ("fail", [], ["--output", "--subscription", "--resource-group"]),
        ("audit", ["--output", "--subscription"], ["--resource-group"]),
    ],
)
def test_scope_and_output_choose_the_shared_options(
    command_name: str, present: list[str], absent: list[str]
) -> None:
    help_text = _run(command_name, "--help").output
    assert all(opt in help_text for opt in present)
    assert not any(opt in help_text for opt in absent)


def test_body_gets_the_shared_options_and_its_answer_is_shown() -> None:
    result = _run("show", "-n", "x", "--subscription", "s1", "-g", "rg1", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "name": "x",
        "where": "/subscriptions/s1/resourceGroups/rg1",
        "output": "json",
    }


def test_api_error_prints_code_and_fix_and_exits_1() -> None:
    result = _run("fail")
    assert result.exit_code == 1
    assert "Nope: It failed." in result.output
    assert "fix: Do something else." in result.output


def test_call_builds_resource_paths() -> None:
    call = Call(Client("http://unused"), subscription="s", resource_group="g")
    assert call.vault("v") == (
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.DataProtection/backupVaults/v"
    )
    assert call.instance("v", "i") == f"{call.vault('v')}/backupInstances/i"
    assert call.group("other") == "/subscriptions/s/resourceGroups/other"
