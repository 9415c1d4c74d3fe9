"""API under load: many concurrent clients reading vaults, instances, jobs and points.

One command starts a real `pgvault serve` on a fresh home (SQLite metadata, or PostgreSQL in
a throwaway cluster with `--metadata postgresql`), seeds it through the service layer, then
runs `--clients` concurrent async HTTP clients for `--duration` seconds: each picks a call at
random, nine reads in ten (list/get vaults, instances, jobs, recovery points) and one write
(PATCH of a vault's tags, audited). It prints requests, errors, req/s and p50/p90/p99 per
kind, and writes them as JSON with `--json`.

    .venv/bin/python benchmarks/api_load.py [--metadata sqlite|postgresql] [--clients 200]
        [--duration 60] [--write-every 10] [--points 0] [--procs 2] [--json out.json]
        [--py-spy out.svg] [--keep]

`--points N` adds N recovery points to one instance and makes every read a list of them (the
"10,000 points under 50 clients" figure). Each client is one keep-alive HTTP/1.1 connection on bare
asyncio streams (httpx's pool was the bottleneck at 200 connections); `--procs` splits the
clients over several client processes.
`--py-spy FILE` records the server with py-spy (on PyPI) during the run: where requests wait.
`--serve-env PGVAULT_API_PROCESSES=2` runs `serve` with two API processes; the server CPU
figure counts its whole process tree.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pgvbench.cluster import Cluster, free_port, pg_bindir

API = "api-version=2025-07-01"
REGION = "eastus"
RG = "load"
VAULTS = 5
INSTANCES_PER_VAULT = 8
JOBS_PER_INSTANCE = 10
PGVAULT_BIN = str(Path(sys.executable).parent / "pgvault")


def vpath(sub: str) -> str:
    return (
        f"/subscriptions/{sub}/resourceGroups/{RG}/providers/Microsoft.DataProtection/backupVaults"
    )


def log(msg: str) -> None:
    print(f"[api-load {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- seeding (through the service layer, in this process, on the server's metadata) ----------


def seed(home: Path, database_url: str | None, points: int) -> dict[str, Any]:
    """Vaults, a policy each, instances, finished jobs and (optionally) recovery points."""
    from pgvault import jobs, recovery_points, retention
    from pgvault.config import Settings
    from pgvault.context import Context
    from pgvault.instances import InstanceSpec
    from pgvault.services import Service

    settings = Settings(home=home, database_url=database_url)
    ctx = Context.create(settings)
    svc = Service(ctx)
    sub = svc.list_subscriptions()[0].id
    svc.put_group(sub, RG, REGION)
    svc.put_server(sub, RG, "src", "127.0.0.1", 5432, REGION)
    svc.put_keyvault(sub, RG, "loadkv", REGION)
    svc.put_secret(sub, RG, "loadkv", "pw", "postgresql://u:p@127.0.0.1/db", None)
    secret_uri = f"{ctx.base_url}/keyvaults/loadkv/secrets/pw"
    props = retention.build_policy(
        schedule="weekly", days=("Sunday",), time="02:00", every_hours=None, timezone="UTC",
        keep_default="P3M", keep_daily=None, keep_weekly=None, keep_monthly=None,
        keep_yearly=None, archive_after=None, archive_keep="P3Y",
    )  # fmt: skip
    server_id = (
        f"/subscriptions/{sub}/resourceGroups/{RG}/providers/Microsoft.DBforPostgreSQL/servers/src"
    )
    layout: dict[str, Any] = {"sub": sub, "vaults": {}}
    now = ctx.clock.now()
    for v in range(VAULTS):
        vname = f"vault{v}"
        vault, _ = svc.put_vault(sub, RG, vname, REGION, {}, {})
        _, policy = svc.put_policy(sub, RG, vname, "weekly", props)
        names, job_ids = [], []
        for i in range(INSTANCES_PER_VAULT):
            name = f"db{v}-{i}"
            policy_id = f"{vpath(sub)}/{vname}/backupPolicies/{policy.name}"
            spec = InstanceSpec(f"{server_id}/databases/{name}", policy_id, secret_uri)
            view, _ = svc.put_instance(sub, RG, vname, name, spec)
            names.append(name)
            with ctx.db.session() as s:
                for _j in range(JOBS_PER_INSTANCE):
                    job = jobs.create(
                        s, vault_id=vault.id, instance_id=view.instance.id,
                        operation=jobs.RESTORE, params={}, now=now,
                    )  # fmt: skip
                    job.status, job.phase, job.ended_at = jobs.COMPLETED, "Completed", now
                    job_ids.append(job.id)
        layout["vaults"][vname] = {"instances": names, "jobs": job_ids}
    if points:
        _seed_points(ctx, layout, points, recovery_points)
    ctx.db.dispose()
    return layout


def _seed_points(ctx: Any, layout: dict[str, Any], count: int, rp: Any) -> None:
    """`count` committed points on the first instance of the first vault (metadata only)."""
    from pgvault import instances, vaults

    sub = layout["sub"]
    with ctx.db.session() as s:
        vault = vaults.get(s, sub, RG, "vault0")
        inst = instances.get(s, vault.id, layout["vaults"]["vault0"]["instances"][0])
        start = datetime.now(UTC) - timedelta(hours=count)
        for n in range(count):
            at = start + timedelta(hours=n)
            s.add(
                rp.RecoveryPoint(
                    id=uuid.uuid4().hex,
                    instance_id=inst.id,
                    vault_id=vault.id,
                    created_at=at,
                    location=f"points/{n}",
                    stored_bytes=1000,
                    dump_bytes=3000,
                    manifest={"format": 1},
                    expires_at=at + timedelta(days=3650),
                    vault_expires_at=at + timedelta(days=3650),
                )
            )
    layout["points_on"] = ("vault0", layout["vaults"]["vault0"]["instances"][0])


# -- the server ------------------------------------------------------------------------------


@contextlib.contextmanager
def pgvault_serve(
    home: Path, port: int, env_extra: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGVAULT_")}
    env.update(PGVAULT_HOME=str(home), **env_extra)
    logf = (home.parent / "serve.log").open("ab")
    proc = subprocess.Popen(
        [PGVAULT_BIN, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"pgvault serve exited: see {home.parent / 'serve.log'}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("pgvault serve did not become healthy")
            time.sleep(0.2)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        logf.close()


def token(base: str, home: Path) -> str:
    creds = json.loads((home / "credentials.json").read_text())
    form = {
        "grant_type": "client_credentials",
        "client_id": creds["clientId"],
        "client_secret": creds["clientSecret"],
    }
    r = httpx.post(f"{base}/oauth2/token", data=form, timeout=30)
    r.raise_for_status()
    return str(r.json()["access_token"])


# -- the clients -----------------------------------------------------------------------------


@dataclass
class Plan:
    base: str
    token: str
    layout: dict[str, Any]
    clients: int
    duration: float
    write_every: int
    points_only: bool


def _pick(plan: Plan, rnd: random.Random, n: int) -> tuple[str, str, str, Any]:
    """(kind, method, path, body) for the n-th call of a client."""
    sub, layout = plan.layout["sub"], plan.layout
    vp = vpath(sub)
    if plan.points_only:
        v, inst = layout["points_on"]
        return "list points", "GET", f"{vp}/{v}/backupInstances/{inst}/recoveryPoints", None
    vname = rnd.choice(list(layout["vaults"]))
    vault = layout["vaults"][vname]
    if plan.write_every and n % plan.write_every == plan.write_every - 1:
        body = {"tags": {"load": str(rnd.randrange(1_000_000))}}
        return "write", "PATCH", f"{vp}/{vname}", body
    inst = rnd.choice(vault["instances"])
    choices = [
        ("list vaults", f"{vp}"),
        ("get vault", f"{vp}/{vname}"),
        ("list instances", f"{vp}/{vname}/backupInstances"),
        ("get instance", f"{vp}/{vname}/backupInstances/{inst}"),
        ("list jobs", f"{vp}/{vname}/backupJobs"),
        ("get job", f"{vp}/{vname}/backupJobs/{rnd.choice(vault['jobs'])}"),
        ("list points", f"{vp}/{vname}/backupInstances/{inst}/recoveryPoints"),
    ]
    kind, path = rnd.choice(choices)
    return kind, "GET", path, None


class Connection:
    """One keep-alive HTTP/1.1 connection per simulated client, on bare asyncio streams.

    httpx's pool costs the client ~1 ms of CPU per request at 200 connections, so on this
    2-core box the client, not the server, was what the first measurements measured.
    """

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.auth = f"Authorization: Bearer {token}\r\nHost: {host}:{port}\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, target: str, body: Any) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        payload = json.dumps(body).encode() if body is not None else b""
        head = f"{method} {target} HTTP/1.1\r\n{self.auth}Content-Length: {len(payload)}\r\n"
        if payload:
            head += "Content-Type: application/json\r\n"
        self.writer.write(head.encode() + b"\r\n" + payload)
        try:
            status_line = await self.reader.readuntil(b"\r\n")
            headers = await self.reader.readuntil(b"\r\n\r\n")
            length, close = 0, False
            for line in headers.split(b"\r\n"):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            await self.reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.close()
            return 0
        if close:
            self.close()
        return int(status_line.split(b" ", 2)[1])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _client(plan: Plan, seed_: int, out: list[tuple[str, float, int]], stop: float) -> None:
    rnd = random.Random(seed_)
    url = httpx.URL(plan.base)
    conn = Connection(url.host, url.port or 80, plan.token)
    n = 0
    while time.monotonic() < stop:
        kind, method, path, body = _pick(plan, rnd, n)
        n += 1
        t0 = time.perf_counter()
        try:
            status = await conn.request(method, f"{path}?{API}", body)
        except OSError:
            conn.close()
            status = 0
        out.append((kind, time.perf_counter() - t0, status))
    conn.close()


async def _drive(plan: Plan, offset: int) -> list[tuple[str, float, int]]:
    out: list[tuple[str, float, int]] = []
    stop = time.monotonic() + plan.duration
    await asyncio.gather(*(_client(plan, offset + i, out, stop) for i in range(plan.clients)))
    return out


def _proc_main(plan: Plan, offset: int) -> list[tuple[str, float, int]]:
    return asyncio.run(_drive(plan, offset))


def drive(plan: Plan, procs: int) -> tuple[list[tuple[str, float, int]], float]:
    """Run the clients (split over `procs` processes); returns samples and wall seconds."""
    per = [plan.clients // procs + (1 if i < plan.clients % procs else 0) for i in range(procs)]
    t0 = time.monotonic()
    if procs == 1:
        samples = _proc_main(plan, 0)
    else:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(procs) as pool:
            parts = pool.starmap(
                _proc_main,
                [(Plan(**{**plan.__dict__, "clients": n}), i * 10_000) for i, n in enumerate(per)],
            )
        samples = [s for part in parts for s in part]
    return samples, time.monotonic() - t0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarise(samples: list[tuple[str, float, int]], wall: float) -> dict[str, Any]:
    def block(rows: list[tuple[str, float, int]]) -> dict[str, Any]:
        lat = [r[1] for r in rows]
        return {
            "requests": len(rows),
            "errors": sum(1 for r in rows if r[2] == 0 or r[2] >= 400),
            "rps": round(len(rows) / wall, 1),
            "p50_ms": round(_pct(lat, 0.50) * 1000, 1),
            "p90_ms": round(_pct(lat, 0.90) * 1000, 1),
            "p99_ms": round(_pct(lat, 0.99) * 1000, 1),
            "max_ms": round(max(lat, default=0) * 1000, 1),
            "mean_ms": round(statistics.fmean(lat) * 1000, 1) if lat else None,
        }

    kinds = sorted({r[0] for r in samples})
    statuses: dict[str, int] = {}
    for r in samples:
        statuses[str(r[2])] = statuses.get(str(r[2]), 0) + 1
    return {
        "wall_s": round(wall, 1),
        "all": block(samples),
        "reads": block([r for r in samples if r[0] != "write"]),
        "by_kind": {k: block([r for r in samples if r[0] == k]) for k in kinds},
        "statuses": statuses,
    }


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def server_pids(pid: int) -> list[int]:
    """The server and its descendants (`--api-processes N`: uvicorn's worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def cpu_seconds(pid: int, reaped: bool = False) -> float:
    """User + system CPU of the process tree under `pid` so far (from /proc): the figure that
    does not depend on what else runs on a shared machine. `reaped`: with the CPU of the
    children `pid` has already waited for (a postmaster's exited backends)."""
    total = 0
    for p in server_pids(pid):
        with contextlib.suppress(OSError, IndexError):
            fields = _stat(p)
            total += int(fields[11]) + int(fields[12])
            if reaped and p == pid:
                total += int(fields[13]) + int(fields[14])
    return total / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds(cluster: Cluster | None) -> float:
    """CPU of the metadata cluster (its backends, live and exited): what the server's
    queries cost on the database side of the same 2 cores."""
    if cluster is None:
        return 0.0
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    return cpu_seconds(postmaster, reaped=True)


def print_report(result: dict[str, Any]) -> None:
    print(f"\n{result['label']}: wall {result['wall_s']} s, statuses {result['statuses']}")
    print(
        f"server CPU {result['server_cpu_s']} s = {result['server_cpu_ms_per_request']} ms "
        f"per request; load average during the run {result['load_average']}"
    )
    if result.get("postgres_cpu_ms_per_request"):
        print(f"metadata PostgreSQL CPU {result['postgres_cpu_ms_per_request']} ms per request")
    print(
        f"{'kind':<16}{'requests':>9}{'errors':>8}{'req/s':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    )
    rows = [("ALL", result["all"]), ("reads", result["reads"]), *result["by_kind"].items()]
    for name, b in rows:
        print(
            f"{name:<16}{b['requests']:>9}{b['errors']:>8}{b['rps']:>8}{b['p50_ms']:>9}"
            f"{b['p90_ms']:>9}{b['p99_ms']:>9}{b['max_ms']:>9}"
        )


# -- main ------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--metadata", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--write-every", type=int, default=10, help="one write in N calls (0: none)")
    ap.add_argument(
        "--points", type=int, default=0, help="recovery points on one instance; reads list them"
    )
    ap.add_argument("--procs", type=int, default=1, help="client processes")
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--py-spy",
        type=Path,
        help="record the server with py-spy: FILE.svg a flame graph, else collapsed stacks",
    )
    ap.add_argument("--serve-env", action="append", default=[], help="KEY=VALUE for pgvault serve")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="pgvault-api-load-"))
    home = root / "home"
    home.mkdir(mode=0o700)
    log(f"work dir {root}")
    with contextlib.ExitStack() as stack:
        if not args.keep:
            stack.callback(shutil.rmtree, root, ignore_errors=True)
        env_extra = dict(kv.split("=", 1) for kv in args.serve_env)
        env_extra.setdefault("PGVAULT_DATASTORE_URL", (root / "datastore").as_uri())
        database_url = None
        cluster = None
        if args.metadata == "postgresql":
            root.chmod(0o755)  # initdb runs as postgres when we are root; the home stays 0700
            cluster = Cluster(root=root / "pg", bindir=pg_bindir())
            stack.callback(cluster.stop)
            cluster.init()
            cluster.start()
            with cluster.connect() as conn:
                conn.execute("CREATE DATABASE pgvault")
            database_url = (
                f"postgresql://postgres:{cluster.password}@127.0.0.1:{cluster.port}/pgvault"
            )
            env_extra["PGVAULT_DATABASE_URL"] = database_url
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = stack.enter_context(pgvault_serve(home, port, env_extra))
        t0 = time.monotonic()
        layout = seed(home, database_url, args.points)
        log(f"seeded in {time.monotonic() - t0:.1f} s")
        plan = Plan(base, token(base, home), layout, args.clients, args.duration,
                    0 if args.points else args.write_every, bool(args.points))  # fmt: skip
        spy = None
        if args.py_spy:
            spy = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(proc.pid), "--output", str(args.py_spy),
                 "--duration", str(int(args.duration)), "--subprocesses", *os.environ.get("API_LOAD_PYSPY_FLAGS", "--idle --threads").split(), "--nonblocking",
                 "--format", "flamegraph" if args.py_spy.suffix == ".svg" else "raw"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        log(f"{args.clients} clients for {args.duration:.0f} s on {args.metadata} metadata")
        cpu0, pg0 = cpu_seconds(proc.pid), postgres_cpu_seconds(cluster)
        samples, wall = drive(plan, args.procs)
        cpu = cpu_seconds(proc.pid) - cpu0
        pg_cpu = postgres_cpu_seconds(cluster) - pg0
        if spy is not None:
            spy.wait(timeout=120)
        result = summarise(samples, wall)
        result["server_cpu_s"] = round(cpu, 1)
        result["server_cpu_ms_per_request"] = round(1000 * cpu / max(1, len(samples)), 2)
        result["postgres_cpu_ms_per_request"] = round(1000 * pg_cpu / max(1, len(samples)), 2)
        result["load_average"] = os.getloadavg()
        label = f"{args.metadata}, {args.clients} clients, {args.duration:.0f} s"
        if args.points:
            label += f", list of {args.points} recovery points"
        result.update(label=label, metadata=args.metadata, clients=args.clients, points=args.points)
        print_report(result)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
