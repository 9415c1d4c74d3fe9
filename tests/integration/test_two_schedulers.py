"""Two pgvault "processes" on one PostgreSQL metadata database and one datastore.

Each has its own Context (own home and keys, the same master key), Scheduler and
WorkerPool; they share a FrozenClock that the test moves an hour at a time. Both
schedulers tick at the same moment from their own threads, several times per slot.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from pgvault import jobs, retention
from pgvault.clock import FrozenClock
from pgvault.scheduler import Scheduler
from tests.integration.clocked import (
    START,
    ClockedVault,
    fresh_pg_database,
    new_master_key,
    open_clocked,
    settings_for,
    tiny_database,
)
from tests.support.pg import PgCluster

T = TypeVar("T")
HOUR = timedelta(hours=1)
POLICY = retention.build_policy(schedule="hourly", every_hours=1, time="00:00", keep_default="P7D")
LEASE_TTL = timedelta(seconds=30)  # Scheduler: max(3 x interval, 30 s)


@pytest.fixture
def two_processes(
    tmp_path: Path, pg_metadata: PgCluster
) -> Iterator[tuple[ClockedVault, ClockedVault]]:
    clock = FrozenClock(START)
    key = new_master_key()
    with fresh_pg_database(pg_metadata) as url:
        opened: list[ClockedVault] = []
        try:
            for n in (1, 2):
                settings = settings_for(
                    tmp_path / f"home{n}",
                    metadata_url=url,
                    datastore=tmp_path / "datastore",
                    archive=tmp_path / "archive",
                    master_key=key,
                )
                opened.append(open_clocked(settings, clock))
            yield opened[0], opened[1]
        finally:
            for cv in opened:
                cv.close()


def together(*actions: Callable[[], T]) -> list[T]:
    """Run the actions in their own threads, released at the same instant; re-raise errors."""
    barrier = threading.Barrier(len(actions))
    results: dict[int, T] = {}
    errors: list[BaseException] = []

    def run(i: int, action: Callable[[], T]) -> None:
        try:
            barrier.wait(10)
            results[i] = action()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return [results[i] for i in range(len(actions))]


def test_each_slot_gives_one_backup_and_the_lease_passes_on(
    two_processes: tuple[ClockedVault, ClockedVault], pg_source: PgCluster
) -> None:
    one, two = two_processes
    one.create_vault(POLICY)
    name = one.protect(pg_source, tiny_database(pg_source, "twosched"))
    assert two.service.get_instance(two.sub, "default", two.name, name)  # the same metadata
    assert one.pool is not None
    assert two.pool is not None
    first = Scheduler(one.ctx, interval=1, notify=one.pool.notify)
    second = Scheduler(two.ctx, interval=1, notify=two.pool.notify)
    clock = one.clock
    assert two.clock is clock

    # -- both tick concurrently, three times each per slot: the lease picks one -----------
    slots = []
    for _ in range(10):
        clock.advance(HOUR)
        slots.append(clock.now())

        def ticks(scheduler: Scheduler) -> list[dict[str, int]]:
            return [scheduler.tick() for _ in range(3)]

        results = together(lambda: ticks(first), lambda: ticks(second))
        one.drain()
        acted = [r for r in results if any(r)]
        assert len(acted) == 1, f"both schedulers held the lease at {clock.now()}: {results}"
        assert sum(t.get("queued", 0) for r in results for t in r) == 1

    # -- no lease at all: both queue due backups at once, repeatedly --------------------------
    for _ in range(6):
        clock.advance(HOUR)
        slots.append(clock.now())

        def queue(scheduler: Scheduler, now: datetime = clock.now()) -> int:
            return sum(scheduler.queue_due_backups(now) for _ in range(5))

        queued = together(lambda: queue(first), lambda: queue(second))
        assert sum(queued) == 1
        one.drain()

    backups = one.jobs(jobs.BACKUP)
    assert Counter(j.params["slot"] for j in backups) == Counter(s.isoformat() for s in slots)
    assert {j.status for j in backups} == {jobs.COMPLETED}, [j.error_message for j in backups]
    # The job names the rule that scheduled it (Azure's PolicyRuleName), not a fixed default.
    assert {j.params["ruleName"] for j in backups} == {"BackupHourly"}
    points = one.points(name)
    assert sorted(str(j.recovery_point_id) for j in backups) == sorted(p.id for p in points)
    assert len(points) == len(slots) == 16
    workers = {str(j.worker_id).rsplit(":", 1)[0] for j in backups}
    assert workers <= {one.pool.ident, two.pool.ident}

    # -- the lease holder dies: the other takes over once the lease has expired ----------------
    clock.advance(LEASE_TTL + timedelta(seconds=1))  # whatever lease there was has run out
    assert first.tick() != {}
    assert second.tick() == {}
    # `first` now stops ticking without releasing its lease (a crash).
    clock.advance(LEASE_TTL - timedelta(seconds=5))
    assert second.tick() == {}, "took over before the lease expired"
    clock.advance(timedelta(seconds=6))
    assert second.tick() != {}, "did not take over after the lease expired"
    assert first.tick() == {}, "the old holder came back and still acted"
    # A clean stop releases the lease: the other takes over at once.
    second.stop()
    assert first.tick() != {}
    one.drain()
    assert len(one.jobs(jobs.BACKUP)) == 16
