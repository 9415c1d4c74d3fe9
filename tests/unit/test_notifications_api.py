"""A vault's notification URLs are secrets: the API never echoes them, valid or not."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.apiapp import Api


@pytest.fixture(scope="module")
def settings_path(api: Api) -> str:
    api.ok("PUT", api.rg("notify"), {"location": "eastus"})
    vault = f"/subscriptions/{api.sub}/resourceGroups/notify/providers/Microsoft.DataProtection/backupVaults/nv"
    api.ok("PUT", vault, {"location": "eastus", "properties": {}})
    return vault + "/notificationSettings/default"


@pytest.mark.parametrize(
    "body",
    [
        {"properties": {"urls": "json://host/?token=SECRET1"}},
        {"properties": {"urls": [5, "json://x?SECRET2"]}},
        {"properties": {"urls": ["nope-SECRET3"]}},
        {"properties": {"urls": [f"json://h/{n}?SECRET4" for n in range(21)]}},
    ],
)
def test_bad_urls_are_400_without_echo(api: Api, settings_path: str, body: Any) -> None:
    r = api.call("PUT", settings_path, body)
    assert r.status_code == 400, r.text
    assert "SECRET" not in r.text


def test_urls_are_stored_and_never_shown(api: Api, settings_path: str) -> None:
    urls = ["jsons://hooks.example/pgvault?token=SECRET5", "ntfys://ntfy.example/SECRET6"]
    r = api.call("PUT", settings_path, {"properties": {"urls": urls}})
    assert r.status_code == 200, r.text
    assert r.json()["properties"]["destinations"] == 2
    assert r.json()["properties"]["schemes"] == ["jsons", "ntfys"]
    for answer in (r, api.call("GET", settings_path)):
        assert "SECRET" not in answer.text
    cleared = api.call("PUT", settings_path, {"properties": {"urls": []}})
    assert cleared.json()["properties"]["destinations"] == 0
    nothing = api.call("POST", settings_path + "/test")
    assert nothing.status_code == 400
    assert "notify-set" in nothing.text
