"""pgvault benchmark: backup and restore against the raw PostgreSQL tools, paired, in one call.

    python benchmarks/run.py [--size-mb 400] [--runs 3] [--keep] [--json out.json]
                             [--skip-pgvault] [--pgvault PATH] [--tmpdir DIR]

Starts a throwaway PostgreSQL 15 cluster, builds a realistic database, measures the dump floor,
pg_dump -Fc, the fastest raw restore and pgvault's backup/restore round by round (A/B, B/A),
then prints the ratios the project targets. See benchmarks/README.md for how to read them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from pgvbench import dataset
from pgvbench.cluster import Cluster, pg_bindir
from pgvbench.measure import CommandError, Op, Sample, measure_pair
from pgvbench.raw import RESTORE_DB, RawTools
from pgvbench.report import Results, print_report
from pgvbench.vaultcli import RESTORE_DB as VAULT_RESTORE_DB
from pgvbench.vaultcli import PgvaultError, Vault, find_pgvault
from rich.console import Console

Log = Callable[[str], None]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size-mb", type=int, default=400, help="database size, MB = 10^6 B (400)")
    p.add_argument("--runs", type=int, default=3, help="measured rounds per pair, after 1 warm-up")
    p.add_argument("--keep", action="store_true", help="leave cluster, serve and files behind")
    p.add_argument("--json", type=Path, help="write the full results here")
    p.add_argument("--skip-pgvault", action="store_true", help="measure the raw tools only")
    p.add_argument("--pgvault", help="pgvault executable (default: next to this python, PATH)")
    p.add_argument("--tmpdir", type=Path, help="where the temp dir goes (default: system tmp)")
    args = p.parse_args(argv)
    if args.runs < 1 or args.size_mb < 10:
        p.error("--runs must be >= 1 and --size-mb >= 10")
    return args


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM/SIGHUP behave like Ctrl-C so the ExitStack cleanup still runs."""
    raise KeyboardInterrupt(f"signal {signum}")


def make_root(parent: Path | None) -> Path:
    """Temp dir that the postgres user can traverse (its cluster lives in a subdir it owns)."""
    root = Path(tempfile.mkdtemp(prefix="pgvault-bench-", dir=parent))
    root.chmod(0o755)
    (root / "work").mkdir()
    return root


def verified(op: Op, cluster: Cluster, db: str, info: dataset.DatasetInfo, res: Results) -> Op:
    """Wrap a restore so every run is checked (untimed) against the source's row counts."""

    def run() -> Sample:
        sample = op.run()
        problem = dataset.verify(cluster, db, info)
        if problem and f"{op.label}: {problem}" not in res.verify_problems:
            res.verify_problems.append(f"{op.label}: {problem}")
        return sample

    return Op(op.key, op.label, run, op.prepare)


@dataclass
class Baselines:
    """The raw operations pgvault is paired with (re-usable: an Op holds no run state)."""

    floor: Op
    dump_fc: Op
    fastest_restore: Op


def run_raw(res: Results, raw: RawTools, runs: int, log: Log) -> Baselines:
    """Dump pairs against the floor, then the two raw restore paths against each other."""
    floor, fc = raw.floor(), raw.dump_fc()
    for a, b in ((fc, floor), (raw.dump_zstd(), floor)):
        log(f"[bold]pair[/] {a.label}  vs  {b.label}")
        res.pairs.append(measure_pair(a, b, runs, log))
    log("pg_dump -Fd -Z0 (input of the parallel restore, one run)")
    res.singles["pg_dump_fd_z0"] = raw.make_fd_dir()
    fd = verified(raw.restore_fd_j2(), raw.cluster, RESTORE_DB, res.dataset, res)
    zst = verified(raw.restore_zstd_stream(), raw.cluster, RESTORE_DB, res.dataset, res)
    log(f"[bold]pair[/] {fd.label}  vs  {zst.label}")
    pair = measure_pair(fd, zst, runs, log)
    res.pairs.append(pair)
    fastest = fd if pair.ratio <= 1.0 else zst
    res.fastest_restore = fastest.key
    raw.cluster.drop_database(RESTORE_DB)
    return Baselines(floor=floor, dump_fc=fc, fastest_restore=fastest)


def run_pgvault(res: Results, vault: Vault, base: Baselines, runs: int, log: Log) -> None:
    """Backup paired with pg_dump -Fc and with the floor; restore with the fastest raw restore."""
    log(f"pgvault serve on {vault.url} (PGVAULT_HOME={vault.home})")
    vault.start()
    vault.setup()
    log(f"  instance {vault.instance}, secret {vault.secret_uri}")
    backup = vault.backup_op()
    for b in (base.dump_fc, base.floor):
        log(f"[bold]pair[/] {backup.label}  vs  {b.label}")
        pair = measure_pair(backup, b, runs, log)
        res.pairs.append(pair)
        if res.stored_bytes is None and pair.a_warmup is not None:
            # The first backup lands in an empty datastore: its growth is the full stored size
            # (later ones may be smaller if pgvault deduplicates).
            res.stored_bytes = pair.a_warmup.out_bytes
    latest = vault.latest_recovery_point()
    if vault.recovery_point and latest != vault.recovery_point:
        res.verify_problems.append(
            f"recovery-point list newest {latest!r} != last backup job's {vault.recovery_point!r}"
        )
    vault.recovery_point = latest
    cluster = vault.cluster
    restore = verified(vault.restore_op(), cluster, VAULT_RESTORE_DB, res.dataset, res)
    log(f"[bold]pair[/] {restore.label}  vs  {base.fastest_restore.label}")
    res.pairs.append(measure_pair(restore, base.fastest_restore, runs, log))
    cluster.drop_database(VAULT_RESTORE_DB)
    cluster.drop_database(RESTORE_DB)


def meta(args: argparse.Namespace, cluster: Cluster) -> dict[str, object]:
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "postgres": cluster.version(),
        "size_mb_requested": args.size_mb,
        "runs": args.runs,
        "warmups": 1,
        "skip_pgvault": args.skip_pgvault,
        "connection": "TCP 127.0.0.1 + scram password (raw tools and pgvault alike)",
    }


def benchmark(args: argparse.Namespace, stack: ExitStack, console: Console) -> Results:
    """Everything between cluster start and report; cleanup is registered on ``stack``."""
    log: Log = lambda msg: console.print(msg, highlight=False)  # noqa: E731
    root = make_root(args.tmpdir)
    log(f"work dir {root}")
    if not args.keep:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
    cluster = Cluster(root=root / "pg", bindir=pg_bindir())
    if not args.keep:
        stack.callback(cluster.stop)
    cluster.init()
    cluster.start()
    log(f"PostgreSQL {cluster.version()} on 127.0.0.1:{cluster.port}; building ~{args.size_mb} MB")
    t0 = time.perf_counter()
    info = dataset.build(cluster, args.size_mb, log)
    log(f"  built in {time.perf_counter() - t0:.1f}s: pg_database_size {info.database_bytes:,} B")
    res = Results(meta=meta(args, cluster), dataset=info)
    raw = RawTools(cluster=cluster, work=root / "work")
    base = run_raw(res, raw, args.runs, log)
    if args.skip_pgvault:
        return res
    binary = find_pgvault(args.pgvault)
    if binary is None:
        res.errors.append("pgvault executable not found (install the package or --skip-pgvault)")
        return res
    vault = Vault(binary=binary, home=root / "pgvault-home", cluster=cluster)
    if not args.keep:
        stack.callback(vault.stop)
    try:
        run_pgvault(res, vault, base, args.runs, log)
    except PgvaultError as exc:
        res.errors.append(f"pgvault: {exc}")
    if args.keep:
        log(f"kept: {root}  cluster port {cluster.port} password {cluster.password}")
        if vault.proc is not None:
            log(f"kept: pgvault serve pid {vault.pid} at {vault.url}")
    return res


def main(argv: list[str] | None = None) -> int:
    """0 whatever the targets say; 1 if pgvault failed; 2 if the harness itself failed."""
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 120)  # logs/CI: no 80-col wrap
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    with ExitStack() as stack:
        try:
            res = benchmark(args, stack, console)
        except KeyboardInterrupt:
            console.print("[red]interrupted[/]; cleaning up")
            return 130
        except CommandError as exc:
            console.print(f"[red]harness command failed[/]: {exc}")
            return 2
        print_report(res, console)
        if args.json:
            args.json.write_text(json.dumps(res.to_json(), indent=2) + "\n")
            console.print(f"JSON written to {args.json}")
    return 1 if res.errors else 0


if __name__ == "__main__":
    sys.exit(main())
