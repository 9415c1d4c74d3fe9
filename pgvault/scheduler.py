"""The scheduler inside `pgvault serve`: backups when their policy says, and housekeeping.

Exactly one scheduler acts at a time, whatever the number of processes: it holds
a lease in the metadata database. A slot is claimed with a conditional UPDATE of
the instance's `last_slot_at` in the same transaction that queues its backup, so
even two overlapping schedulers produce one backup per slot. After downtime only
the latest missed slot runs (one catch-up per instance, not one per slot).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
import zlib
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from pgvault import (
    alerts,
    housekeeping,
    instances,
    jobs,
    jsonbody,
    leases,
    policies,
    retention,
    vaults,
)
from pgvault.context import Context
from pgvault.errors import PgVaultError
from pgvault.jobkinds import backup

log = logging.getLogger("pgvault.scheduler")
LEASE = "scheduler"


def spread_offset(instance_id: str, window_seconds: int) -> timedelta:
    """Where in a slot's start window this instance starts: fixed per instance (crc32 of
    its id, the same in every process and after restarts), uniform over the window, so
    instances sharing a slot start spread out rather than all at the same second."""
    if window_seconds <= 0:
        return timedelta(0)
    return timedelta(seconds=zlib.crc32(instance_id.encode()) % window_seconds)


class Scheduler:
    """Ticks every `interval` seconds while it holds the lease; `tick()` is also callable."""

    def __init__(self, ctx: Context, interval: float = 20.0, notify: object = None) -> None:
        self.ctx = ctx
        self.interval = interval
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._notify = notify
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: The last protection error alerted per instance: a lasting one alerts once.
        self._reported: dict[str, str] = {}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="pgvault-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        leases.release(self.ctx.db, LEASE, self.holder)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("scheduler tick failed")
            self._stop.wait(self.interval)

    def tick(self) -> dict[str, int]:
        """If we hold the lease: queue due backups, then run a housekeeping pass."""
        now = self.ctx.clock.now()
        ttl = timedelta(seconds=max(3 * self.interval, 30))
        if not leases.acquire(self.ctx.db, LEASE, self.holder, now, ttl):
            return {}
        queued = self.queue_due_backups(now)
        done = housekeeping.sweep(self.ctx)
        if queued and callable(self._notify):
            self._notify()
        return {"queued": queued, **done}

    def queue_due_backups(self, now: datetime) -> int:
        with self.ctx.db.session() as s:
            ids = list(
                s.scalars(
                    select(instances.Instance.id).where(
                        instances.Instance.protection_state == instances.PROTECTION_CONFIGURED
                    )
                )
            )
        return sum(self._queue_one(inst_id, now) for inst_id in ids)

    def _queue_one(self, inst_id: str, now: datetime) -> int:
        try:
            with self.ctx.db.session() as s:
                inst = s.get(instances.Instance, inst_id)
                policy = s.get(policies.Policy, inst.policy_id) if inst else None
                if inst is None or policy is None:
                    return 0
                slot = retention.schedule_of(policy.properties).due(
                    inst.last_slot_at or inst.created_at, now
                )
                if slot is None or jobs.running_backup(s, inst.id):
                    return 0  # a running backup: the slot stays due for the next tick
                if now < slot + spread_offset(inst.id, self.ctx.settings.schedule_spread_seconds):
                    return 0  # this instance's turn in the slot's window comes later
                claimed = s.execute(
                    update(instances.Instance)
                    .where(
                        instances.Instance.id == inst.id,
                        or_(
                            instances.Instance.last_slot_at.is_(None),
                            instances.Instance.last_slot_at < slot,
                        ),
                    )
                    .values(last_slot_at=slot)
                )
                if claimed.rowcount != 1:  # type: ignore[attr-defined]
                    return 0
                vault = s.get(vaults.Vault, inst.vault_id)
                assert vault is not None
                rule = retention.backup_rule(policy.properties)
                backup.queue(
                    s,
                    vault,
                    inst,
                    now,
                    rule_name=str(jsonbody.get(rule, "name") or "") or None,
                    user_triggered=False,
                    slot=slot,
                )
                log.info("queued scheduled backup of %s for slot %s", inst.name, slot)
                late = (now - slot).total_seconds() > self.ctx.settings.missed_schedule_seconds
                missed = (vault.id, inst.name, slot) if late else None
        except PgVaultError as exc:
            log.warning("could not schedule instance %s: %s", inst_id, exc.message)
            self._protection_error(inst_id, exc.message)
            return 0
        if missed is not None:  # committed: alert outside the transaction
            alerts.missed_schedule(self.ctx, *missed, now)
        return 1

    def _protection_error(self, inst_id: str, message: str) -> None:
        if self._reported.get(inst_id) == message:
            return
        self._reported[inst_id] = message
        with self.ctx.db.session() as s:
            inst = s.get(instances.Instance, inst_id)
            where = (inst.vault_id, inst.name) if inst else None
        if where is not None:
            alerts.protection_error(self.ctx, *where, message)
