"""Server time of the portal's list pages and the REST point list at scale.

    .venv/bin/python benchmarks/portal.py [--instances 1000] [--points 10000] [--jobs 20000]

Seeds one pgvault (SQLite metadata under a temp home, no workers): servers, key vaults, ten
vaults, and the instances through the service layer (`Service.put_instance`, as the API
does); the recovery points (all on one instance, the worst case for its lists) and the jobs
(completed, spread over the vaults) through their domain modules in bulk, since a real backup
per row would take hours. Then it signs in to the portal in-process and times each page
(wall time of the in-process request: routing, authorisation, queries, rendering; no network)
and prints p50 / p95 per page.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from fastapi.testclient import TestClient

from pgvault import jobs, recovery_points
from pgvault.config import Settings
from pgvault.context import Context
from pgvault.instances import InstanceSpec
from pgvault.server import app_with_portal
from pgvault.services import Service

RG = "default"
REGION = "eastus"
VAULTS = 10
PAGE = 100
#: `--crr`: GeoRedundant vaults with Cross Region Restore (the Secondary Region filter's worst case)
GEO = {
    "storageSettings": [{"datastoreType": "VaultStore", "type": "GeoRedundant"}],
    "featureSettings": {"crossRegionRestoreSettings": {"state": "Enabled"}},
}


def seed(
    svc: Service, ctx: Context, n_instances: int, n_points: int, n_jobs: int, crr: bool = False
) -> tuple[str, str]:
    sub = svc.list_subscriptions()[0].id
    svc.put_server(sub, RG, "bench", "127.0.0.1", 5432, REGION)
    svc.put_keyvault(sub, RG, "benchkv", REGION)
    svc.put_secret(sub, RG, "benchkv", "s", "Server=127.0.0.1;User Id=u;Password=p;", None)
    secret = f"{ctx.base_url}/keyvaults/benchkv/secrets/s"
    server = svc.get_server(sub, RG, "bench")
    vault_ids: list[tuple[str, str]] = []
    for v in range(VAULTS):
        vault, _ = svc.put_vault(sub, RG, f"vault{v}", REGION, GEO if crr else {}, {})
        svc.put_policy(sub, RG, f"vault{v}", "p", {})
        vault_ids.append((vault.id, vault.arm_id))
    instance_ids: list[tuple[str, str]] = []
    for i in range(n_instances):
        v = i % VAULTS
        spec = InstanceSpec(
            server.database_id(f"db{i}"), f"{vault_ids[v][1]}/backupPolicies/p", secret
        )
        view, _ = svc.put_instance(sub, RG, f"vault{v}", f"i{i}", spec)
        instance_ids.append((view.vault.id, view.instance.id))
    now = ctx.clock.now()
    with ctx.db.session() as s:
        vault_id, inst_id = instance_ids[0]
        for p in range(n_points):
            at = now - timedelta(hours=p)
            recovery_points.add(
                s,
                recovery_points.RecoveryPoint(
                    id=uuid.uuid4().hex, instance_id=inst_id, vault_id=vault_id, created_at=at,
                    location=f"bench/{p}", stored_bytes=1000 + p, dump_bytes=2000 + p,
                    manifest={"dbName": "db0", "objects": []}, expires_at=at + timedelta(days=365),
                ),
            )  # fmt: skip
        for j in range(n_jobs):
            vault_id, inst_id = instance_ids[j % len(instance_ids)]
            at = now - timedelta(minutes=j)
            job = jobs.create(s, vault_id=vault_id, instance_id=inst_id, operation=jobs.RESTORE,
                              params={}, now=at)  # fmt: skip
            job.status, job.phase = jobs.COMPLETED, "Completed"
            job.started_at, job.ended_at = at, at + timedelta(seconds=30)
            if j % 1000 == 999:
                s.flush()
    return sub, "i0"


def timed(call: Callable[[], object], runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(int(len(samples) * 0.95) - 1, 0)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=1000)
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--crr", action="store_true", help="vaults with Cross Region Restore on")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="pgvault-bench-")) / "home"
    home.mkdir(parents=True)
    ctx = Context.create(Settings(home=home, datastore_url="memory://"))
    app = app_with_portal(ctx, start_workers=False)
    with TestClient(app) as client:
        svc: Service = app.state.service
        t0 = time.perf_counter()
        sub, big = seed(svc, ctx, args.instances, args.points, args.jobs, args.crr)
        print(f"seeded {args.instances} instances, {args.points} points, {args.jobs} jobs "
              f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
        creds = json.loads(ctx.settings.credentials_file.read_text())
        signin = {
            "kind": "service-principal",
            "name": creds["clientId"],
            "secret": creds["clientSecret"],
        }
        assert client.post("/signin", data=signin, follow_redirects=False).status_code == 303
        token = client.post(
            "/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": creds["clientId"],
                "client_secret": creds["clientSecret"],
            },
        )
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}  # fmt: skip
        vault = f"/vaults/{sub}/{RG}/vault0"
        arm = f"/subscriptions/{sub}/resourceGroups/{RG}/providers/Microsoft.DataProtection/backupVaults/vault0"
        pages = {
            "Backup center (/)": lambda: client.get("/"),
            "Backup center (Secondary Region filter)": lambda: client.get("/?region=Secondary"),
            "instance list (vault page, 100 instances)": lambda: client.get(vault),
            f"point list (instance page, {args.points} points)": lambda: client.get(f"{vault}/instances/{big}"),
            "point list (wizard tab)": lambda: client.get(f"{vault}/instances/{big}/restore?tab=point"),
            "jobs list (/jobs)": lambda: client.get("/jobs"),
            f"REST list of {args.points} points": lambda: client.get(
                f"{arm}/backupInstances/{big}/recoveryPoints?api-version=2025-07-01", headers=bearer),
        }  # fmt: skip
        rest = f"{arm}/backupInstances/{big}/recoveryPoints"
        pages[f"REST page of {PAGE} points ($top={PAGE}, first)"] = lambda: client.get(
            rest, params={"api-version": "2025-07-01", "$top": PAGE}, headers=bearer
        )
        pages[f"REST page of {PAGE} points (middle, $skipToken)"] = lambda: client.get(
            rest,
            params={"api-version": "2025-07-01", "$top": PAGE, "$skipToken": args.points // 2},
            headers=bearer,
        )
        walked, url = 0, f"{rest}?api-version=2025-07-01&%24top={PAGE}"
        while url:  # the nextLink chain covers every point once
            parts = urlsplit(url)
            body = client.get(f"{parts.path}?{parts.query}", headers=bearer).json()
            walked += len(body["value"])
            url = body["nextLink"]
        assert walked == args.points, (walked, args.points)
        print(f"{'page':48} {'p50 ms':>8} {'p95 ms':>8}")
        for name, call in pages.items():
            response = call()
            assert response.status_code == 200, (name, response.status_code, response.text[:300])  # type: ignore[attr-defined]
            rows = len(re.findall(r"<tr", response.text))  # type: ignore[attr-defined]
            p50, p95 = timed(call, args.runs)
            print(f"{name:48} {p50:8.1f} {p95:8.1f}   ({rows} table rows)")
    ctx.db.dispose()


if __name__ == "__main__":
    main()
