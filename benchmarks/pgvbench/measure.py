"""Timing primitives: whole-process wall and client CPU, /proc sampling, paired A/B rounds.

The machine is 2 noisy cores, so absolute walls drift between calls; only ratios of runs taken
back to back (A, B, then B, A, ...) are trusted. Everything here serves that pairing.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


class CommandError(RuntimeError):
    """A measured or helper command exited non-zero; carries what is needed to reproduce it."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        super().__init__(f"command failed (rc={returncode}): {' '.join(argv)}\n{tail}")


@dataclass
class Result:
    """One finished command: wall seconds, CPU of its whole process tree, captured stdout."""

    wall_s: float
    cpu_s: float
    stdout: bytes


def _children_cpu() -> float:
    """User+sys of every reaped child so far; a delta around one command is that command's CPU.

    Children of children (pg_dump under bash, zstd in a pipe) roll up here once waited for,
    which is why shell pipelines are measured correctly without tracking their PIDs.
    """
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    stdin: bytes | None = None,
    capture: bool = False,
    cwd: Path | None = None,
) -> Result:
    """Run a command to completion, timing the whole process (start to reap).

    The child gets its own session so that Ctrl-C or an exception here kills its whole process
    group (a pipeline under bash included) instead of leaving pg_dump/zstd orphans behind.
    """
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        list(argv),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(stdin)
    except BaseException:
        kill_group(proc)
        raise
    wall = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0
    if proc.returncode != 0:
        raise CommandError(argv, proc.returncode, err.decode(errors="replace"))
    return Result(wall_s=wall, cpu_s=cpu, stdout=out or b"")


def shell(script: str) -> list[str]:
    """argv for a bash pipeline that fails if any stage fails (a pg_dump dying mid-pipe counts)."""
    return ["bash", "-o", "pipefail", "-c", script]


def kill_group(proc: subprocess.Popen[bytes], grace_s: float = 0.0) -> None:
    """Stop a child started with start_new_session=True, and everything it spawned.

    Only the group led by our own child is signalled, by its id, never by process name.
    """
    if proc.poll() is not None:
        return
    try:
        if grace_s > 0:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
                return
            except subprocess.TimeoutExpired:
                pass
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


# --- /proc sampling -------------------------------------------------------------------------


def _read_stat(pid: int) -> tuple[int, float] | None:
    """(ppid, utime+stime+cutime+cstime in s) of one process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces/parens: fields start after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    ticks = sum(int(x) for x in fields[11:15])
    return int(fields[1]), ticks / CLK_TCK


def descendants(root: int) -> list[int]:
    """root and every live descendant (this kernel has no /proc/PID/task/TID/children)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _read_stat(int(entry))
            if st is not None:
                parent[int(entry)] = st[0]
    tree, frontier = [root], [root]
    while frontier:
        nxt = [pid for pid, ppid in parent.items() if ppid in frontier]
        tree.extend(nxt)
        frontier = nxt
    return tree


def tree_cpu(root: int) -> float:
    """CPU seconds of a live process tree, including children it has already reaped.

    A delta around a pgvault job is what the server side spent on it (its pg_dump included).
    """
    total = 0.0
    for pid in descendants(root):
        st = _read_stat(pid)
        if st is not None:
            total += st[1]
    return total


def rss_mb(pid: int) -> float:
    """Current VmRSS of one process in MB (10^6 B), 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6  # VmRSS is in KiB
    except OSError:
        pass
    return 0.0


class RssSampler:
    """Peak VmRSS of a process, and of its whole tree, while a job runs.

    VmHWM would be cheaper but is a lifetime peak, so it cannot be attributed to one job;
    sampling every 50 ms catches any buffer that lives longer than that. The tree (serve plus
    any pg_dump/pg_restore or worker it spawns) is summed every tick over a PID list that is
    refreshed every ``tree_every`` ticks, because scanning all of /proc is the costly part.
    """

    def __init__(self, pid: int, interval_s: float = 0.05, tree_every: int = 4) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.tree_every = tree_every
        self.start_mb = rss_mb(pid)  # what serve holds idle, before the job
        self.peak_mb = self.start_mb
        self.tree_peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        tick, tree = 0, [self.pid]
        while not self._stop.is_set():
            if tick % self.tree_every == 0:
                tree = descendants(self.pid)
            sizes = {pid: rss_mb(pid) for pid in tree}
            self.peak_mb = max(self.peak_mb, sizes.get(self.pid, 0.0))
            self.tree_peak_mb = max(self.tree_peak_mb, sum(sizes.values()))
            tick += 1
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def dir_bytes(path: Path) -> int:
    """Apparent size of all regular files below path (0 if missing)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # a file may vanish while pgvault works
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


# --- paired rounds --------------------------------------------------------------------------


@dataclass
class Sample:
    """What one timed run produced. ``extra`` holds pgvault-only figures (job time, RSS, ...)."""

    wall_s: float
    cpu_s: float
    out_bytes: int | None = None
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class Op:
    """A measurable operation; ``prepare`` runs untimed before every run (e.g. dropdb)."""

    key: str
    label: str
    run: Callable[[], Sample]
    prepare: Callable[[], None] | None = None

    def once(self) -> Sample:
        if self.prepare is not None:
            self.prepare()
        return self.run()


@dataclass
class Pair:
    """Runs of A and B taken round by round; ratios are per round, then the median."""

    a: Op
    b: Op
    a_runs: list[Sample] = field(default_factory=list)
    b_runs: list[Sample] = field(default_factory=list)
    a_warmup: Sample | None = None
    b_warmup: Sample | None = None

    @property
    def ratios(self) -> list[float]:
        return [x.wall_s / y.wall_s for x, y in zip(self.a_runs, self.b_runs, strict=True)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)


def measure_pair(a: Op, b: Op, runs: int, log: Callable[[str], None]) -> Pair:
    """One warm-up round, then ``runs`` rounds alternating AB, BA, AB ... (order bias cancels)."""
    pair = Pair(a=a, b=b)
    pair.a_warmup, pair.b_warmup = a.once(), b.once()
    log(
        f"  warm-up  {a.label}: {pair.a_warmup.wall_s:.2f}s  {b.label}: {pair.b_warmup.wall_s:.2f}s"
    )
    for i in range(runs):
        if i % 2 == 0:
            sa = a.once()
            sb = b.once()
        else:
            sb = b.once()
            sa = a.once()
        pair.a_runs.append(sa)
        pair.b_runs.append(sb)
        log(
            f"  round {i + 1}  {a.label}: {sa.wall_s:.2f}s  {b.label}: {sb.wall_s:.2f}s"
            f"  ratio {sa.wall_s / sb.wall_s:.3f}"
        )
    return pair
