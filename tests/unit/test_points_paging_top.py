"""The REST list of recovery points pages on request (`$top`, `$skipToken`, `nextLink`), newest
first, each point once; without `$top` it is one page, as before."""

from __future__ import annotations

import uuid
from datetime import timedelta
from urllib.parse import urlsplit

from pgvault import recovery_points
from pgvault.instances import InstanceSpec
from pgvault.services import Service
from tests.support.apiapp import Api

RG = "default"
POINTS = 25


def _seed(api: Api) -> str:
    """An instance with POINTS recovery points (rows written directly: no backups run here)."""
    svc: Service = api.client.app.state.service  # type: ignore[attr-defined]
    sub = api.sub
    svc.put_server(sub, RG, "pg", "127.0.0.1", 5432, "eastus")
    svc.put_keyvault(sub, RG, "pagingkv", "eastus")
    svc.put_secret(sub, RG, "pagingkv", "s", "Server=127.0.0.1;User Id=u;Password=p;", None)
    vault, _ = svc.put_vault(sub, RG, "pv", "eastus", {}, {})
    svc.put_policy(sub, RG, "pv", "p", {})
    spec = InstanceSpec(
        svc.get_server(sub, RG, "pg").database_id("db"),
        f"{vault.arm_id}/backupPolicies/p",
        f"{api.ctx.base_url}/keyvaults/pagingkv/secrets/s",
    )
    view, _ = svc.put_instance(sub, RG, "pv", "bi", spec)
    now = api.ctx.clock.now()
    with api.ctx.db.session() as s:
        for i in range(POINTS):
            at = now - timedelta(hours=i)
            recovery_points.add(
                s,
                recovery_points.RecoveryPoint(
                    id=uuid.uuid4().hex, instance_id=view.instance.id, vault_id=vault.id,
                    created_at=at, location=f"x/{i}", stored_bytes=1, dump_bytes=1,
                    manifest={"dbName": "db", "objects": []},
                ),
            )  # fmt: skip
    return f"{vault.arm_id}/backupInstances/bi/recoveryPoints"


def test_points_page_with_top_and_next_link(api: Api) -> None:
    path = _seed(api)
    whole = api.get(path, params={"api-version": "2025-07-01"}).json()
    assert len(whole["value"]) == POINTS
    assert whole["nextLink"] is None
    seen: list[str] = []
    url: str | None = f"{path}?api-version=2025-07-01&%24top=10"
    sizes = []
    while url:
        parts = urlsplit(url)
        body = api.get(f"{parts.path}?{parts.query}").json()
        sizes.append(len(body["value"]))
        seen += [p["name"] for p in body["value"]]
        url = body["nextLink"]
    assert sizes == [10, 10, 5]
    assert seen == [p["name"] for p in whole["value"]]  # newest first, each once
    bad = api.get(path, params={"api-version": "2025-07-01", "$top": "0"})
    assert bad.status_code == 400
