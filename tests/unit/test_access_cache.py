"""Cached authentication and authorisation (the access epoch) stay exact across processes,
and the audit trail's group commit loses no row.

Two apps on one SQLite metadata file stand for two `pgvault serve` processes: a change made
through one (a removed role assignment, a revoked token, a disabled principal) takes effect
on the very next call to the other, whose cache was warm.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from pgvault.api.app import create_app
from pgvault.audit import AuditEvent
from pgvault.config import Settings
from pgvault.context import Context
from tests.support.apiapp import Api


@pytest.fixture(scope="module")
def other(api: Api) -> Iterator[TestClient]:
    """A second app (process) on the same home and metadata database."""
    st = api.ctx.settings
    settings = Settings(home=st.home, datastore_url="memory://", local_storage_roots=(st.home,))
    ctx = Context.create(settings)
    with TestClient(create_app(ctx, start_workers=False), raise_server_exceptions=False) as c:
        yield c
    ctx.db.dispose()


def _reader(api: Api) -> tuple[dict[str, str], dict[str, object], str]:
    """A fresh principal with Reader on the subscription: its headers, props, assignment."""
    props = api.principal(f"cached-{uuid.uuid4().hex[:8]}")
    assignment = api.assign(f"/subscriptions/{api.sub}", "Reader", str(props["principalId"]))
    return api.sign_in(props), props, assignment["id"]


def test_removed_role_denies_at_once_in_another_process(api: Api, other: TestClient) -> None:
    headers, _props, assignment_id = _reader(api)
    path = f"/subscriptions/{api.sub}/providers/Microsoft.DataProtection/backupVaults"
    for _ in range(3):  # warm both caches
        assert other.get(path, headers=headers).status_code == 200
        assert api.client.get(path, headers=headers).status_code == 200
    api.ok("DELETE", assignment_id)
    assert other.get(path, headers=headers).status_code == 403
    assert api.client.get(path, headers=headers).status_code == 403


def test_revoked_token_and_disabled_principal_fail_at_once(api: Api, other: TestClient) -> None:
    headers, props, _ = _reader(api)
    path = f"/subscriptions/{api.sub}/providers/Microsoft.DataProtection/backupVaults"
    assert other.get(path, headers=headers).status_code == 200
    assert api.client.post("/oauth2/revoke", headers=headers).status_code == 200
    assert other.get(path, headers=headers).status_code == 401

    fresh = api.sign_in(props)
    assert other.get(path, headers=fresh).status_code == 200
    api.ok("DELETE", f"/pgvault/principals/{props['clientId']}")
    assert other.get(path, headers=fresh).status_code == 401


def test_a_granted_role_allows_at_once(api: Api, other: TestClient) -> None:
    props = api.principal(f"late-{uuid.uuid4().hex[:8]}")
    headers = api.sign_in(props)
    path = f"/subscriptions/{api.sub}/providers/Microsoft.DataProtection/backupVaults"
    assert other.get(path, headers=headers).status_code == 403  # the denial is cached too
    api.assign(f"/subscriptions/{api.sub}", "Reader", str(props["principalId"]))
    assert other.get(path, headers=headers).status_code == 200


def test_concurrent_writes_each_get_one_audit_row(api: Api) -> None:
    """Writes that arrive together share commits (group commit); every one is recorded."""
    groups = [f"audited-{uuid.uuid4().hex[:8]}" for _ in range(24)]

    def put(name: str) -> int:
        r = api.call("PUT", api.rg(name), {"location": "eastus"})
        return int(r.status_code)

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(put, groups)) <= {200, 201}
    with api.ctx.db.session() as s:
        for name in groups:
            count = s.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.scope.ilike(f"%/resourceGroups/{name}"))
            )
            assert count == 1, name
