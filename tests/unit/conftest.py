"""Fixtures the unit tests share: the API in-process, with its admin signed in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pgvault.clock import Clock
from tests.support.apiapp import Api, in_process


@pytest.fixture(scope="module")
def api_clock() -> Clock | None:
    """The clock the module's app runs on: the system's, unless the module freezes one."""
    return None


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, api_clock: Clock | None) -> Iterator[Api]:
    """One app per test module (memory datastore, no workers) and its admin's token."""
    with in_process(tmp_path_factory.mktemp("api"), api_clock) as (ctx, client):
        yield Api.signed_in(ctx, client)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give each schemathesis case its own node id (`test_api[GET /path]`).

    schemathesis names every operation's item `test_api`; pytest-xdist's file scheduler keys
    items by node id, so without this all but one item per name would never run in
    `scripts/test`'s parallel processes.
    """
    for item in items:
        if item.nodeid.endswith("::test_api") and item.name.startswith("test_api["):
            assert item.parent is not None
            # pytest keeps a node's id in `_id` (what `nodeid` prints): the id a plain
            # parametrized test of that name would have.
            item._id = item.parent.id.child(item.name)
