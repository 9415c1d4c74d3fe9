"""Turn paired runs into the numbers the project targets, as a table and as JSON.

A MISS is information, not failure: the benchmark exits 0 whatever the ratios say.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from .dataset import MB, DatasetInfo
from .measure import Pair, Sample

# Extras where the worst run matters, not the typical one.
PEAK_EXTRAS = {"peak_rss_mb", "tree_peak_rss_mb"}


@dataclass
class Target:
    """One project goal: value compared with a bound (``le``: value <= bound is a PASS)."""

    name: str
    what: str
    bound: float
    value: float | None
    unit: str = "x"
    note: str = ""

    @property
    def status(self) -> str:
        if self.value is None:
            return "SKIP"
        return "PASS" if self.value <= self.bound else "MISS"


@dataclass
class Results:
    """Everything one benchmark call measured; ``to_json`` is the machine-readable report."""

    meta: dict[str, Any]
    dataset: DatasetInfo
    pairs: list[Pair] = field(default_factory=list)
    singles: dict[str, Sample] = field(default_factory=dict)  # one-off, unpaired runs
    fastest_restore: str | None = None
    stored_bytes: int | None = None
    verify_problems: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def pair(self, a: str, b: str) -> Pair | None:
        return next((p for p in self.pairs if p.a.key == a and p.b.key == b), None)

    def samples(self, key: str, warmups: bool = False) -> list[Sample]:
        """All runs of one op across every pair it took part in (the floor is in several)."""
        out: list[Sample] = []
        for p in self.pairs:
            for op, runs, warm in ((p.a, p.a_runs, p.a_warmup), (p.b, p.b_runs, p.b_warmup)):
                if op.key == key:
                    out.extend(runs)
                    if warmups and warm is not None:
                        out.append(warm)
        return out

    def labels(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for p in self.pairs:
            found.setdefault(p.a.key, p.a.label)
            found.setdefault(p.b.key, p.b.label)
        return found

    def ratio(self, a: str, b: str) -> float | None:
        p = self.pair(a, b)
        return p.ratio if p else None

    def peak_rss(self) -> float | None:
        peaks = [
            s.extra["peak_rss_mb"]
            for key in ("pgvault_backup", "pgvault_restore")
            for s in self.samples(key, warmups=True)
        ]
        return max(peaks) if peaks else None

    def fc_file_bytes(self) -> float | None:
        sizes = [s.out_bytes for s in self.samples("pg_dump_fc") if s.out_bytes is not None]
        return statistics.median(sizes) if sizes else None

    def targets(self) -> list[Target]:
        fc = self.fc_file_bytes()
        stored = self.stored_bytes / fc if self.stored_bytes is not None and fc else None
        fastest = self.fastest_restore or ""
        fastest_label = self.labels().get(fastest, "fastest raw restore")
        return [
            Target("backup_vs_pg_dump_fc", "pgvault backup / pg_dump -Fc (wall)", 0.3,
                   self.ratio("pgvault_backup", "pg_dump_fc")),
            Target("backup_vs_floor", "pgvault backup / dump floor (wall)", 1.3,
                   self.ratio("pgvault_backup", "floor")),
            Target("stored_vs_pg_dump_fc", "stored size / pg_dump -Fc file", 0.85, stored),
            Target("backup_job_vs_floor", "pgvault backup job alone / dump floor (medians)", 1.1,
                   self.job_ratio("pgvault_backup", "floor")),
            Target("restore_vs_fastest_raw", f"pgvault restore / {fastest_label} (wall)", 1.0,
                   self.ratio("pgvault_restore", fastest)),
            Target("restore_job_vs_fastest_raw", "pgvault restore job alone / fastest raw "
                   "(medians)", 1.0, self.job_ratio("pgvault_restore", fastest)),
            Target("peak_rss_mb", "pgvault serve peak RSS during a job", 250.0,
                   self.peak_rss(), unit="MB", note="aim, <= 250"),
        ]  # fmt: skip

    def job_ratio(self, a: str, b: str) -> float | None:
        """The job's own duration (no CLI start-up or polling) over B's median wall."""
        jobs = [s.extra["job_s"] for s in self.samples(a) if "job_s" in s.extra]
        walls = [s.wall_s for s in self.samples(b)]
        if not jobs or not walls:
            return None
        return statistics.median(jobs) / statistics.median(walls)

    def op_summary(self, key: str) -> dict[str, Any]:
        runs = self.samples(key)
        walls = [s.wall_s for s in runs]
        wall = statistics.median(walls)
        outs = [s.out_bytes for s in runs if s.out_bytes is not None]
        summary: dict[str, Any] = {
            "label": self.labels()[key],
            "runs": len(runs),
            "wall_s": walls,
            "wall_s_median": wall,
            "cpu_s_median": statistics.median(s.cpu_s for s in runs),
            "db_mb_per_s": self.dataset.database_bytes / MB / wall,
            "out_bytes_median": statistics.median(outs) if outs else None,
        }
        for name in sorted({k for s in runs for k in s.extra}):
            values = [s.extra[name] for s in self.samples(key, warmups=True) if name in s.extra]
            agg = max if name in PEAK_EXTRAS else statistics.median
            summary[name] = agg(values)
        return summary

    def to_json(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "dataset": asdict(self.dataset),
            "operations": {key: self.op_summary(key) for key in self.labels()},
            "singles": {k: asdict(v) for k, v in self.singles.items()},
            "pairs": [
                {
                    "a": p.a.key,
                    "b": p.b.key,
                    "ratio_median": p.ratio,
                    "ratios": p.ratios,
                    "a_wall_s": [s.wall_s for s in p.a_runs],
                    "b_wall_s": [s.wall_s for s in p.b_runs],
                }
                for p in self.pairs
            ],
            "fastest_raw_restore": self.fastest_restore,
            "stored_bytes": self.stored_bytes,
            "pg_dump_fc_bytes": self.fc_file_bytes(),
            "targets": [{**asdict(t), "status": t.status} for t in self.targets()],
            "verify_problems": self.verify_problems,
            "errors": self.errors,
        }


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / MB:,.1f}"


def _rss(summary: dict[str, Any]) -> str:
    """serve's RSS as "idle > peak" so growth during the job is visible at a glance."""
    if "peak_rss_mb" not in summary:
        return "-"
    return f"{summary['start_rss_mb']:.0f} > {summary['peak_rss_mb']:.0f}"


OP_COLUMNS = ("operation", "runs", "wall s", "DB MB/s", "cpu s", "out MB", "job s", "RSS MB")


def operations_table(res: Results) -> Table:
    table = Table(title="Operations (medians over paired runs)", title_justify="left")
    for col in OP_COLUMNS:
        table.add_column(col, justify="left" if col == "operation" else "right")
    for key in res.labels():
        s = res.op_summary(key)
        table.add_row(
            s["label"],
            str(s["runs"]),
            _fmt(s["wall_s_median"]),
            _fmt(s["db_mb_per_s"], ".0f"),
            _fmt(s["cpu_s_median"]),
            _mb(s["out_bytes_median"]),
            _fmt(s.get("job_s")),
            _rss(s),
        )
    return table


def pairs_table(res: Results) -> Table:
    table = Table(title="Paired ratios (median of per-round A/B wall)", title_justify="left")
    for col in ("A", "B", "A/B", "per round"):
        table.add_column(col, justify="left" if col in ("A", "B") else "right")
    for p in res.pairs:
        rounds = " ".join(f"{r:.2f}" for r in p.ratios)
        table.add_row(p.a.label, p.b.label, f"{p.ratio:.3f}", rounds)
    return table


def targets_table(res: Results) -> Table:
    table = Table(title="Project targets", title_justify="left")
    for col in ("metric", "value", "target", "status"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    colour = {"PASS": "green", "MISS": "red", "SKIP": "dim"}
    for t in res.targets():
        value = (
            "-" if t.value is None else f"{t.value:.3f}" if t.unit == "x" else f"{t.value:.0f} MB"
        )
        bound = f"<= {t.bound:g}" if t.unit == "x" else f"< {t.bound:g} MB"
        table.add_row(t.what, value, bound, f"[{colour[t.status]}]{t.status}[/]")
    return table


def print_report(res: Results, console: Console) -> None:
    """Dataset line, the three tables, then anything that went wrong."""
    d = res.dataset
    console.print(
        f"\n[bold]bench[/]: pg_database_size {d.database_bytes:,} B "
        f"({d.database_bytes / MB:,.1f} MB); wide {d.wide_rows:,} rows "
        f"(body ~{d.avg_body_chars:.0f} chars), accounts {d.small_rows:,} rows, "
        f"{d.large_objects} large objects"
    )
    z0 = res.singles.get("pg_dump_fd_z0")
    zst = [s.out_bytes for s in res.samples("pg_dump_zstd1") if s.out_bytes]
    if z0 is not None and z0.out_bytes and zst:
        console.print(
            f"uncompressed dump (-Fd -Z0): {z0.out_bytes / MB:,.1f} MB; zstd -1 keeps "
            f"{statistics.median(zst) / z0.out_bytes:.0%} of it (baseline wide DB: 35 %)"
        )
    fc = res.fc_file_bytes()
    if fc is not None:
        stored = "-" if res.stored_bytes is None else f"{res.stored_bytes / MB:,.1f} MB"
        raw_zst = f" (raw zstd -1 = {statistics.median(zst) / fc:.2f}x of it)" if zst else ""
        console.print(f"pg_dump -Fc file: {fc / MB:,.1f} MB{raw_zst}; pgvault stored: {stored}")
    for make in _TABLES:
        console.print(make(res))
    for problem in res.verify_problems:
        console.print(f"[yellow]verify:[/] {problem}")
    for err in res.errors:
        console.print(f"[red]error:[/] {err}")


_TABLES: list[Callable[[Results], Table]] = [operations_table, pairs_table, targets_table]
