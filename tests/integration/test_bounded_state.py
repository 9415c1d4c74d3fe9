"""Audit and lockout rows stay bounded: identical denials coalesce, old rows are pruned.

Runs on SQLite and on PostgreSQL metadata with a frozen clock that the test advances.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from pgvault import housekeeping, identity, restore_claims
from pgvault.audit import AuditEvent
from pgvault.clock import FrozenClock
from pgvault.config import Settings
from pgvault.context import Context
from pgvault.errors import TooManyAttempts, Unauthorized
from pgvault.identity import LoginFailures
from pgvault.services.access import AccessService

START = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def clocked(tmp_path: Path, metadata_url: str | None) -> Iterator[tuple[Context, FrozenClock]]:
    clock = FrozenClock(START)
    settings = Settings(home=tmp_path / "home", database_url=metadata_url, audit_retention_days=30)
    ctx = Context.create(settings, clock=clock)
    ctx.migrate()
    try:
        yield ctx, clock
    finally:
        ctx.db.dispose()


def _audit_rows(ctx: Context) -> list[AuditEvent]:
    with ctx.db.session() as s:
        return list(s.scalars(select(AuditEvent).order_by(AuditEvent.at)))


def _lockout_rows(ctx: Context) -> int:
    with ctx.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(LoginFailures)) or 0)


def test_identical_denials_coalesce_and_old_rows_are_pruned(
    clocked: tuple[Context, FrozenClock],
) -> None:
    ctx, clock = clocked
    access = AccessService(ctx)
    for _ in range(50):  # a flood of unauthenticated 401s on one path
        access.record(None, "Microsoft.DataProtection/backupVaults/read", "/x", "GET", 401, None)
        clock.advance(timedelta(seconds=1))
    access.record(None, "Microsoft.DataProtection/backupVaults/write", "/x", "PUT", 401, None)
    rows = _audit_rows(ctx)
    assert [(r.action.rsplit("/", 1)[-1], r.count) for r in rows] == [("read", 50), ("write", 1)]

    # Outside the coalescing window (60 s), the same denial starts a new row.
    clock.advance(timedelta(minutes=5))
    access.record(None, "Microsoft.DataProtection/backupVaults/read", "/x", "GET", 401, None)
    assert len(_audit_rows(ctx)) == 3

    # Writes are never coalesced: each one is its own row.
    caller = identity.Caller("p1", "alice", identity.USER)
    for _ in range(2):
        access.record(caller, "Microsoft.DataProtection/backupVaults/write", "/x", "PUT", 200, None)
    assert len(_audit_rows(ctx)) == 5

    # Retention: 30 days after the last occurrence, the sweep removes the rows.
    clock.advance(timedelta(days=29))
    assert housekeeping.sweep(ctx)["auditPruned"] == 0
    assert len(_audit_rows(ctx)) == 5
    clock.advance(timedelta(days=2))
    assert housekeeping.sweep(ctx)["auditPruned"] == 5
    assert _audit_rows(ctx) == []


def test_unknown_names_are_counted_locked_and_their_rows_pruned(
    clocked: tuple[Context, FrozenClock],
) -> None:
    ctx, clock = clocked
    access = AccessService(ctx)
    for name in ("ghost1", "ghost2"):
        for _ in range(identity.MAX_FAILURES):
            with pytest.raises(Unauthorized):
                access.token_for_user(name, "wrong")
        with pytest.raises(TooManyAttempts) as locked:
            access.token_for_user(name, "wrong")
        assert locked.value.retry_after is not None
        assert locked.value.retry_after > 0
    assert _lockout_rows(ctx) == 2

    # While locked, the rows stay; once the lockout window is over, the sweep removes them.
    assert housekeeping.sweep(ctx)["auditPruned"] == 0
    clock.advance(identity.LOCKOUT + timedelta(seconds=1))
    assert housekeeping.sweep(ctx)["auditPruned"] == 2
    assert _lockout_rows(ctx) == 0
    # ... and the name may try again.
    with pytest.raises(Unauthorized):
        access.token_for_user("ghost1", "wrong")


def test_parallel_wrong_passwords_run_at_most_max_failures_checks(
    clocked: tuple[Context, FrozenClock],
) -> None:
    ctx, _clock = clocked
    access = AccessService(ctx)
    _, password = access.create_principal("alice", "user")
    assert password

    def attempt(_: int) -> str:
        try:
            access.token_for_user("alice", "wrong")
        except TooManyAttempts:
            return "429"
        except Unauthorized:
            return "401"
        return "200"

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(attempt, range(20)))
    assert outcomes.count("401") <= identity.MAX_FAILURES
    assert outcomes.count("429") == 20 - outcomes.count("401")
    # Locked: even the right password waits.
    with pytest.raises(TooManyAttempts):
        access.token_for_user("alice", password)


def test_a_prefix_claim_is_exclusive_until_its_job_ends(
    clocked: tuple[Context, FrozenClock],
) -> None:
    ctx, clock = clocked
    with ctx.db.session() as s:
        restore_claims.claim(s, "acct/c", "c", "p/q", "job-a", clock.now())
    # A claim whose job is not in progress (here: no such job, as after a crash) is taken over.
    with ctx.db.session() as s:
        restore_claims.claim(s, "acct/c", "c", "p/q", "job-b", clock.now())
        assert restore_claims.holder(s, "acct/c", "p/q") == "job-b"
    # Another prefix or container is another claim.
    with ctx.db.session() as s:
        restore_claims.claim(s, "acct/c", "c", "p/r", "job-c", clock.now())
        restore_claims.claim(s, "acct/d", "d", "p/q", "job-d", clock.now())
    with ctx.db.session() as s:
        restore_claims.release(s, "job-b")
        assert restore_claims.holder(s, "acct/c", "p/q") is None
        assert restore_claims.holder(s, "acct/c", "p/r") == "job-c"
