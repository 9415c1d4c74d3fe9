"""The global job limit's slots are taken in the order jobs asked for them, on a real
PostgreSQL: a worker that frees a slot and at once asks again with its next job waits
behind the jobs already waiting (in any worker), instead of winning every race
(`procworker._wait_for_slot`: the turnstile lock). Observed through pg_locks, not timing."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text

from pgvault import procworker
from tests.support.pg import PgCluster

#: Advisory locks on the turnstile key (-1 as PostgreSQL shows an oid), granted or waiting.
TURNSTILE_LOCKS = text(
    "SELECT count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted)"
    " FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2"
    " AND classid = :c AND objid = 4294967295"
)


@pytest.fixture
def engine(pg_metadata: PgCluster) -> Iterator[Engine]:
    name = f"slots_{uuid.uuid4().hex[:8]}"
    pg_metadata.execute(f'CREATE DATABASE "{name}"')
    made = create_engine(
        pg_metadata.superuser_url(name).replace("postgresql:", "postgresql+psycopg:")
    )
    yield made
    made.dispose()
    pg_metadata.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _until(engine: Engine, granted: int, waiting: int) -> None:
    """Poll pg_locks until the turnstile shows this many holders and waiters."""
    deadline = time.monotonic() + 60
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            row = conn.execute(TURNSTILE_LOCKS, {"c": procworker.GLOBAL_SLOTS}).one()
            conn.commit()
            if tuple(row) == (granted, waiting):
                return
            time.sleep(0.02)
    raise AssertionError(f"turnstile never showed {granted} held, {waiting} waiting")


def test_a_freed_slot_goes_to_the_job_that_waited_longest(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(procworker, "SLOT_POLL_SECONDS", 0.05)
    order: list[str] = []

    def job(name: str) -> None:
        with engine.connect() as conn:
            slot = procworker._wait_for_slot(conn, 1)
            order.append(name)
            conn.execute(text("SELECT pg_advisory_unlock(:c, :k)"),
                         {"c": procworker.GLOBAL_SLOTS, "k": slot})  # fmt: skip
            conn.commit()

    holder = engine.connect()
    slot = procworker._wait_for_slot(holder, 1)  # the one slot, taken
    first = threading.Thread(target=job, args=("waited longest",))
    first.start()
    _until(engine, granted=1, waiting=0)  # it holds the turnstile, polling for the slot
    second = threading.Thread(target=job, args=("waited next",))
    second.start()
    _until(engine, granted=1, waiting=1)  # in line behind it

    holder.execute(text("SELECT pg_advisory_unlock(:c, :k)"),
                   {"c": procworker.GLOBAL_SLOTS, "k": slot})  # fmt: skip
    holder.commit()
    job("asked again at once")  # the worker that freed the slot, with its next job
    holder.close()
    for t in (first, second):
        t.join(60)
    assert order == ["waited longest", "waited next", "asked again at once"]
