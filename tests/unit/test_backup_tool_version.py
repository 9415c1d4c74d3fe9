"""The local pg_dump must be at least the server's major version."""

from __future__ import annotations

import pytest

from pgvault.engine import dump as backup
from pgvault.engine import pgtools
from pgvault.errors import UserError


@pytest.mark.parametrize(
    ("tool_major", "server_version_num"),
    [(16, 160004), (17, 160004), (16, 150010), (10, 100023), (17, 90624)],
)
def test_new_enough(
    monkeypatch: pytest.MonkeyPatch, tool_major: int, server_version_num: int
) -> None:
    monkeypatch.setattr(
        pgtools, "tool_version", lambda name: (tool_major, f"{name} (PostgreSQL) {tool_major}.1")
    )
    backup.check_tool_version(server_version_num)


@pytest.mark.parametrize(
    ("tool_major", "server_version_num"), [(15, 160004), (14, 170000), (16, 170002)]
)
def test_too_old(monkeypatch: pytest.MonkeyPatch, tool_major: int, server_version_num: int) -> None:
    calls: list[str] = []

    def fake(name: str) -> tuple[int, str]:
        calls.append(name)
        return tool_major, f"pg_dump (PostgreSQL) {tool_major}.9"

    monkeypatch.setattr(pgtools, "tool_version", fake)
    with pytest.raises(UserError) as info:
        backup.check_tool_version(server_version_num)
    assert calls == ["pg_dump"]
    exc = info.value
    assert exc.code == "UserErrorBackupToolVersionTooOld"
    assert f"{tool_major}.9" in exc.message
    assert str(server_version_num // 10000) in exc.message
    assert exc.recommended_action
    assert exc.to_body()["error"]["additionalInfo"][0]["info"]["isUserError"] is True
