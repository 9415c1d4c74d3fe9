"""The raw PostgreSQL tool runs that pgvault is judged against.

Each is the exact command of perf-baseline.md, connecting over TCP with a password (like
pgvault has to), so the comparison is tool against tool on the same wire.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from .cluster import Cluster
from .measure import Op, Sample, dir_bytes, run, shell

SOURCE_DB = "bench"
RESTORE_DB = "rt"


@dataclass
class RawTools:
    """Builds the measured raw operations; ``work`` holds their output files."""

    cluster: Cluster
    work: Path

    @property
    def fc_file(self) -> Path:
        return self.work / "bench.Fc.dump"

    @property
    def zst_file(self) -> Path:
        return self.work / "bench.Z0.dump.zst"

    @property
    def fd_dir(self) -> Path:
        return self.work / "bench.Fd.Z0"

    def _run(self, argv: list[str], out: Path | None = None) -> Sample:
        res = run(argv, self.cluster.tcp_env(), cwd=self.work)
        size = None
        if out is not None:
            size = dir_bytes(out) if out.is_dir() else out.stat().st_size
        return Sample(wall_s=res.wall_s, cpu_s=res.cpu_s, out_bytes=size)

    def floor(self) -> Op:
        """``pg_dump -Fc -Z0 > /dev/null``: the server's COPY-out speed, nothing can beat it."""
        argv = ["pg_dump", "-Fc", "-Z0", "-d", SOURCE_DB]
        return Op("floor", "floor: pg_dump -Fc -Z0 >/dev/null", lambda: self._run(argv))

    def dump_fc(self) -> Op:
        """``pg_dump -Fc -f F``: what most people run (built-in gzip), the target's yardstick."""
        argv = ["pg_dump", "-Fc", "-d", SOURCE_DB, "-f", str(self.fc_file)]
        return Op(
            "pg_dump_fc",
            "pg_dump -Fc (gzip)",
            lambda: self._run(argv, self.fc_file),
            prepare=lambda: self.fc_file.unlink(missing_ok=True),
        )

    def dump_zstd(self) -> Op:
        """``pg_dump -Fc -Z0 | zstd -1``: the best logical dump path measured on this machine;
        also produces the file the streamed restore reads."""
        script = (
            f"pg_dump -Fc -Z0 -d {SOURCE_DB} | zstd -1 -q -c > {shlex.quote(str(self.zst_file))}"
        )
        return Op(
            "pg_dump_zstd1",
            "pg_dump -Fc -Z0 | zstd -1",
            lambda: self._run(shell(script), self.zst_file),
            prepare=lambda: self.zst_file.unlink(missing_ok=True),
        )

    def make_fd_dir(self) -> Sample:
        """One untimed-in-pairs ``pg_dump -Fd -Z0`` so the parallel restore has its input."""
        run(["rm", "-rf", str(self.fd_dir)], self.cluster.base_env())
        argv = ["pg_dump", "-Fd", "-Z0", "-d", SOURCE_DB, "-f", str(self.fd_dir)]
        return self._run(argv, self.fd_dir)

    def _restore_op(self, key: str, label: str, script: str) -> Op:
        """createdb is inside the timing (as in the baseline); dropdb + CHECKPOINT are not."""
        full = f"createdb {RESTORE_DB} && {script}"
        return Op(
            key,
            label,
            lambda: self._run(shell(full)),
            prepare=lambda: self.cluster.drop_database(RESTORE_DB),
        )

    def restore_fd_j2(self) -> Op:
        """``pg_restore -j 2`` of a -Fd -Z0 dir: the parallel path (2 cores, so 2 jobs)."""
        script = f"pg_restore -j 2 -d {RESTORE_DB} {shlex.quote(str(self.fd_dir))}"
        return self._restore_op("restore_fd_j2", "pg_restore -j 2 of -Fd -Z0", script)

    def restore_zstd_stream(self) -> Op:
        """``zstd -dc F.zst | pg_restore``: the streamed single-job path (what a vault can do)."""
        script = f"zstd -dc {shlex.quote(str(self.zst_file))} | pg_restore -d {RESTORE_DB}"
        return self._restore_op("restore_zstd", "zstd -dc | pg_restore", script)
