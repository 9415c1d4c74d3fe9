"""Cross-region replication benchmark: lag and throughput of one recovery point copied
between two local datastores by pgvault's Replication job.

    python benchmarks/replication.py [--size-mb 1000] [--runs 1] [--tmpdir DIR] [--keep]
                                     [--json out.json]

Runs pgvault in-process (metadata in SQLite, the worker pool running): an eastus vault
with Cross Region Restore whose secondary, westus, is a second local directory (a regions
file, as a deployment writes one). Each run stores a synthetic recovery point of
`--size-mb` MB (10^6 B) of incompressible bytes (a point's objects are zstd output) in
the primary datastore, then commits it exactly as a backup does (row, retention plan,
Replication job queued in the same transaction) and waits for the replica. Reported:

- lag: point committed -> replica recorded available in westus (what `replicationLag`
  shows; includes queueing, the copy, the read-back verification and the manifest);
- copy throughput: stored bytes / the job's "Transferring data" phase (copy + verify:
  every byte is written once and read back once in the secondary);
- queue delay: job created -> claimed by a worker.

No PostgreSQL server is needed: the point is synthetic, the path it takes is pgvault's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from pgvault import instances, jobs, policies, recovery_points, replicas, vaults
from pgvault.config import Settings
from pgvault.context import Context
from pgvault.engine.manifest import DUMP, MANIFEST, Manifest, StoredObject
from pgvault.jobkinds import replicate
from pgvault.recovery_points import RecoveryPoint
from pgvault.secrets import secret_uri
from pgvault.services import InstanceSpec, Service
from pgvault.workers import WorkerPool

RG, EAST, WEST = "default", "eastus", "westus"
CHUNK = 8 << 20


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size-mb", type=int, default=1000, help="point size, MB = 10^6 B (1000)")
    p.add_argument("--runs", type=int, default=1, help="points replicated, one after the other")
    p.add_argument("--tmpdir", type=Path, help="where the temp dir goes (default: system tmp)")
    p.add_argument("--keep", action="store_true", help="leave the datastores behind")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    if args.size_mb < 1 or args.runs < 1:
        p.error("--size-mb and --runs must be >= 1")
    return args


def start(root: Path) -> tuple[Service, WorkerPool]:
    """pgvault in-process, westus on its own local directory."""
    regions_file = root / "regions.json"
    west = (root / "westus-datastore").as_uri()
    regions_file.write_text(json.dumps({"regions": {WEST: {"datastore": west}}}))
    settings = Settings(home=root / "home", regions_file=regions_file, workers=2)
    ctx = Context.create(settings)
    pool = WorkerPool(ctx, 2)
    service = Service(ctx, pool)
    service.bootstrap()
    pool.start()
    return service, pool


def protect(service: Service) -> tuple[str, str]:
    """A CRR vault and one protected database (metadata only: nothing is contacted)."""
    sub = service.list_subscriptions()[0].id
    grs = {
        "storageSettings": [{"datastoreType": "VaultStore", "type": "GeoRedundant"}],
        "featureSettings": {"crossRegionRestoreSettings": {"state": "Enabled"}},
    }
    service.put_vault(sub, RG, "bench", EAST, grs, {})
    service.put_policy(sub, RG, "bench", "weekly", {})
    server = service.put_server(sub, RG, "pg", "127.0.0.1", 5432, EAST)
    service.put_keyvault(sub, RG, "kvbench", EAST)
    kv, row = service.put_secret(
        sub, RG, "kvbench", "pw", "Server=127.0.0.1;User Id=u;Password=p;", None
    )
    vault = service.get_vault(sub, RG, "bench")
    spec = InstanceSpec(
        database_id=server.database_id("shop"),
        policy_id=f"{vault.arm_id}/backupPolicies/weekly",
        secret_uri=secret_uri(service.ctx.base_url, kv.name, row.name),
    )
    service.put_instance(sub, RG, "bench", "shop", spec)
    return sub, vault.id


def _random(size: int, digest: Any) -> Iterator[bytes]:
    left = size
    while left:
        chunk = os.urandom(min(CHUNK, left))
        digest.update(chunk)
        left -= len(chunk)
        yield chunk


def store_point(
    ctx: Context, vault: vaults.Vault, inst: instances.Instance, size: int
) -> tuple[str, Manifest, str]:
    """Write a point's object and manifest into the primary datastore (not timed)."""
    point_id = uuid.uuid4().hex
    location = f"{vault.datastore_prefix}/{inst.id}/{point_id}"
    digest = hashlib.sha256()
    target = ctx.datastore.child(location)
    target.put_stream(DUMP, _random(size, digest))
    manifest = Manifest(
        recoveryPointId=point_id, dbName=inst.database, serverName="pg", serverFQDN="127.0.0.1:5432",
        usernameUsed="u", postgresVersion="15", serverVersionNum=150000, backupToolPath="pg_dump",
        backupToolVersion="synthetic", backupToolArgs=[], createdTime=datetime.now().isoformat(),
        dataSourceSize=size, bytesTransferred=size, storedBytes=size,
        objects=[StoredObject(DUMP, size, digest.hexdigest())],
    )  # fmt: skip
    target.put_bytes(MANIFEST, manifest.to_json())
    return point_id, manifest, location


def commit(
    ctx: Context, vault_id: str, inst_id: str, point_id: str, manifest: Manifest, location: str
) -> str:
    """Commit the point as a backup does; returns the Replication job queued with it."""
    with ctx.db.session() as s:
        now = ctx.clock.now()
        inst = s.get_one(instances.Instance, inst_id)
        policy = s.get_one(policies.Policy, inst.policy_id)
        point = recovery_points.add(
            s,
            RecoveryPoint(
                id=point_id, instance_id=inst_id, vault_id=vault_id, created_at=now,
                location=location, stored_bytes=manifest.storedBytes,
                dump_bytes=manifest.bytesTransferred, retention_tag="Default",
                policy_name=policy.name, policy_version=policy.version, expires_at=None,
                manifest=manifest.to_dict(),
            ),
        )  # fmt: skip
        recovery_points.plan_point(point, policy.properties)
        vault = vaults.by_id(s, vault_id)
        replicate.after_commit(s, vault, point, now, ctx.settings.replication_delay_seconds)
        job = s.scalars(
            select(jobs.Job.id).where(
                jobs.Job.operation == replicate.OPERATION, jobs.Job.recovery_point_id == point_id
            )
        ).one()
    return str(job)


def wait(ctx: Context, job_id: str, timeout: float = 3600) -> jobs.Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with ctx.db.session() as s:
            job = jobs.get(s, job_id)
            if job.status != jobs.IN_PROGRESS:
                s.expunge(job)
                return job
        time.sleep(0.05)
    raise TimeoutError(f"replication job {job_id} did not end in {timeout}s")


def _phase_seconds(job: jobs.Job, name: str) -> float:
    for phase in job.phases:
        if phase["name"] == name and phase.get("end"):
            start = datetime.fromisoformat(phase["start"])
            return (datetime.fromisoformat(phase["end"]) - start).total_seconds()
    return float("nan")


def run_once(service: Service, vault_id: str, size: int) -> dict[str, float]:
    ctx = service.ctx
    with ctx.db.session() as s:
        vault = vaults.by_id(s, vault_id)
        inst = s.scalars(
            select(instances.Instance).where(instances.Instance.vault_id == vault_id)
        ).one()
        s.expunge_all()
    point_id, manifest, location = store_point(ctx, vault, inst, size)
    job_id = commit(ctx, vault_id, inst.id, point_id, manifest, location)
    if service.pool is not None:
        service.pool.notify()
    job = wait(ctx, job_id)
    if job.status != jobs.COMPLETED:
        raise RuntimeError(f"replication failed: {job.error_code}: {job.error_message}")
    with ctx.db.session() as s:
        replica = replicas.get(s, point_id, WEST)
        assert replica is not None
        lag = replica.lag_seconds
    copy = _phase_seconds(job, "Transferring data")
    assert job.started_at is not None
    return {
        "sizeMB": size / 1e6,
        "lagSeconds": lag,
        "copySeconds": copy,
        "copyMBps": size / 1e6 / copy if copy else float("nan"),
        "queueDelaySeconds": (job.started_at - job.created_at).total_seconds(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="pgvault-replbench-", dir=args.tmpdir))
    service: Service | None = None
    pool: WorkerPool | None = None
    try:
        service, pool = start(root)
        _, vault_id = protect(service)
        results = []
        for n in range(args.runs):
            r = run_once(service, vault_id, args.size_mb * 1_000_000)
            results.append(r)
            print(
                f"run {n + 1}: {r['sizeMB']:.0f} MB  lag {r['lagSeconds']:.2f} s  "
                f"copy+verify {r['copySeconds']:.2f} s = {r['copyMBps']:.0f} MB/s  "
                f"queue delay {r['queueDelaySeconds']:.3f} s"
            )
        if args.json:
            args.json.write_text(json.dumps({"runs": results}, indent=2))
        return 0
    finally:
        if pool is not None:
            pool.stop()
        if service is not None:
            service.ctx.db.dispose()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
