"""Recovery-point lists are paged like Azure's (`value` + `nextLink`): a long history costs
each call one page, and following `nextLink` yields every point once, latest first."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx

from pgvault import instances, recovery_points, retention, vaults
from pgvault.instances import InstanceSpec
from pgvault.services import Service
from tests.support.apiapp import Api

RG = "paging"
REGION = "eastus"
COUNT = 450


def _instance_with_points(api: Api) -> str:
    """An instance (metadata only) with COUNT committed points; returns its list URL."""
    svc: Service = api.client.app.state.service  # type: ignore[attr-defined]
    sub = api.sub
    svc.put_group(sub, RG, REGION)
    svc.put_server(sub, RG, "src", "127.0.0.1", 5432, REGION)
    svc.put_keyvault(sub, RG, "pagingkv", REGION)
    svc.put_secret(sub, RG, "pagingkv", "pw", "postgresql://u:p@127.0.0.1/db", None)
    svc.put_vault(sub, RG, "pv", REGION, {}, {})
    svc.put_policy(sub, RG, "pv", "weekly", retention.build_policy(schedule="weekly"))
    vault_path = f"/subscriptions/{sub}/resourceGroups/{RG}/providers/Microsoft.DataProtection/backupVaults/pv"
    server = (
        f"/subscriptions/{sub}/resourceGroups/{RG}/providers/Microsoft.DBforPostgreSQL/servers/src"
    )
    spec = InstanceSpec(
        f"{server}/databases/shop",
        f"{vault_path}/backupPolicies/weekly",
        f"{api.ctx.base_url}/keyvaults/pagingkv/secrets/pw",
    )
    svc.put_instance(sub, RG, "pv", "shop", spec)
    start = datetime.now(UTC) - timedelta(hours=COUNT)
    with api.ctx.db.session() as s:
        vault = vaults.get(s, sub, RG, "pv")
        inst = instances.get(s, vault.id, "shop")
        for n in range(COUNT):
            at = start + timedelta(hours=n)
            s.add(
                recovery_points.RecoveryPoint(
                    id=uuid.uuid4().hex,
                    instance_id=inst.id,
                    vault_id=vault.id,
                    created_at=at,
                    location=f"points/{n}",
                    stored_bytes=1,
                    dump_bytes=1,
                    manifest={"format": 1},
                    expires_at=at + timedelta(days=3650),
                )
            )
    return f"{vault_path}/backupInstances/shop/recoveryPoints"


def test_points_are_paged_and_nextlink_walks_them_all(api: Api) -> None:
    url = _instance_with_points(api)
    seen: list[dict[str, object]] = []
    pages = []
    r = api.call("GET", url, params={"api-version": "2025-07-01"})
    while True:
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append(len(body["value"]))
        seen += body["value"]
        if not body["nextLink"]:
            break
        link = httpx.URL(body["nextLink"])
        assert link.params["api-version"] == "2025-07-01"
        r = api.call("GET", link.path, params=dict(link.params))
    assert pages == [200, 200, 50]
    ids = [p["name"] for p in seen]
    assert len(set(ids)) == COUNT
    times = [p["properties"]["recoveryPointTime"] for p in seen]  # type: ignore[index]
    assert times == sorted(times, reverse=True)

    small = api.call("GET", url, params={"api-version": "2025-07-01", "$top": "7"}).json()
    assert len(small["value"]) == 7
    assert "%24top=7" in small["nextLink"] or "$top=7" in small["nextLink"]
    bad = api.call("GET", url, params={"api-version": "2025-07-01", "$top": "0"})
    assert bad.status_code == 400
