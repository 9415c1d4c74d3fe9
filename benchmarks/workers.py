"""Backlog throughput of `pgvault worker` processes (the procrastinate executor).

    .venv/bin/python benchmarks/workers.py [--workers 1,2,3] [--servers 3]
        [--databases 20] [--concurrency 1] [--per-server 2] [--json out.json]

One PostgreSQL metadata cluster and `--servers` source clusters of `--databases` small
databases each (one protected instance per database) are built once. Then, for each worker
count, a backlog of one backup per instance is queued while no worker runs, that many
`pgvault worker` processes are started, and the backlog is timed until its last job ends.

Reported per worker count: the drain time (first job start to last job end, from the job
rows: worker start-up excluded), the wall time including start-up, backups per second, and
how many jobs each worker ran. Limits: `--concurrency` jobs per worker, `--per-server` per
source server, no global limit. The machine is shared: take the ratios, not the absolutes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# the repository root is on the path now (E402 is not selected)
from tests.support.fleet import Fleet, fleet
from tests.support.pg import PgCluster


def drain(made: Fleet, workers: int, concurrency: int) -> dict[str, object]:
    """Queue one backup per instance, start `workers` workers, time the drain, stop them."""
    queued = made.queue_backups()
    wall0 = time.monotonic()
    made.start_workers(workers, PGVAULT_WORKER_CONCURRENCY=str(concurrency))
    done = made.wait_all(queued, timeout=1800)
    wall = time.monotonic() - wall0
    made.stop_workers()
    failed = [j.id for j in done if j.status != "Completed"]
    starts = [j.started_at for j in done if j.started_at]
    ends = [j.ended_at for j in done if j.ended_at]
    span = (max(ends) - min(starts)).total_seconds()
    per_job = [
        (j.ended_at - j.started_at).total_seconds() for j in done if j.started_at and j.ended_at
    ]
    by_worker = Counter(":".join((j.worker_id or "?").split(":")[:3]) for j in done)
    return {
        "workers": workers,
        "backups": len(done),
        "failed": len(failed),
        "drain_s": round(span, 2),
        "wall_s": round(wall, 2),
        "backups_per_s": round(len(done) / span, 2),
        "job_median_s": round(statistics.median(per_job), 3),
        "jobs_per_worker": sorted(by_worker.values(), reverse=True),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="1,2,3", help="worker counts to measure, e.g. 1,2,3")
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--databases", type=int, default=20, help="databases per server")
    parser.add_argument("--concurrency", type=int, default=1, help="jobs per worker")
    parser.add_argument("--per-server", type=int, default=2, help="jobs per source server")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    results = []
    metadata = PgCluster.start("bench-meta")
    try:
        with tempfile.TemporaryDirectory(prefix="pgvault-workers-") as tmp:
            limits = {"PGVAULT_SOURCE_SERVER_CONCURRENCY": str(args.per_server)}
            with fleet(metadata, Path(tmp), args.servers, args.databases, **limits) as made:
                for n in counts:
                    result = drain(made, n, args.concurrency)
                    results.append(result)
                    print(json.dumps(result), flush=True)
    finally:
        metadata.stop()
    base = results[0]["backups_per_s"] if results else 0
    print(
        f"\n{'workers':>7} {'backups':>7} {'drain s':>8} {'wall s':>7} {'backups/s':>9} {'speed-up':>8}  jobs per worker"
    )
    for r in results:
        speedup = float(r["backups_per_s"]) / float(base) if base else 0.0
        print(
            f"{r['workers']:>7} {r['backups']:>7} {r['drain_s']:>8} {r['wall_s']:>7} "
            f"{r['backups_per_s']:>9} {speedup:>8.2f}  {r['jobs_per_worker']}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if any(r["failed"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
