"""Metrics and readiness, read from the metadata database and the datastore when asked.

`registry(ctx)` builds a `CollectorRegistry` owned by the app (no process-global registry)
holding one collector that queries the metadata database at scrape time: jobs by operation
and status, durations of jobs finished in the recent window, bytes moved, recovery points per
instance and the age of the newest, queue depth, and the newest heartbeat per worker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from pgvault import instances, jobs, recovery_points, replicas, vaults
from pgvault.context import Context

log = logging.getLogger("pgvault.observability")

#: Finished jobs whose durations a scrape reads: those ended within this window, at most this many.
DURATION_WINDOW = timedelta(hours=24)
DURATION_ROWS = 10_000
#: Heartbeats older than this are not reported (the worker is long gone).
HEARTBEAT_WINDOW = timedelta(hours=24)
BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 3 * 3600.0, 12 * 3600.0)


def _seconds(later: datetime, earlier: datetime) -> float:
    return max(0.0, (later - earlier).total_seconds())


class MetadataCollector(Collector):
    """Prometheus metrics computed from the metadata database on each scrape."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        return iter(list(self._gather()))  # read in full: the session closes before output

    def _gather(self) -> Iterator[Metric]:
        now = self.ctx.clock.now()
        with self.ctx.db.session() as s:
            by_status = GaugeMetricFamily(
                "pgvault_jobs", "Jobs by operation and status.", labels=["operation", "status"]
            )
            rows = s.execute(
                select(jobs.Job.operation, jobs.Job.status, func.count()).group_by(
                    jobs.Job.operation, jobs.Job.status
                )
            ).all()
            for operation, status, count in rows:
                by_status.add_metric([operation, status], count)
            yield by_status

            queued = s.scalar(
                select(func.count()).where(
                    jobs.Job.status == jobs.IN_PROGRESS, jobs.Job.worker_id.is_(None)
                )
            )
            yield GaugeMetricFamily(
                "pgvault_queue_depth", "Jobs queued, not yet claimed by a worker.", value=queued
            )
            oldest_queued = s.scalar(
                select(func.min(jobs.Job.created_at)).where(
                    jobs.Job.status == jobs.IN_PROGRESS, jobs.Job.worker_id.is_(None)
                )
            )
            yield GaugeMetricFamily(
                "pgvault_queue_oldest_age_seconds",
                "Seconds the oldest queued job has waited for a worker (0: none waits).",
                value=_seconds(now, _aware(oldest_queued, now)) if oldest_queued else 0.0,
            )

            moved = CounterMetricFamily(
                "pgvault_job_transferred_bytes",
                "Bytes moved by jobs (dumped, restored), by operation.",
                labels=["operation"],
            )
            for operation, total in s.execute(
                select(
                    jobs.Job.operation, func.coalesce(func.sum(jobs.Job.bytes_done), 0)
                ).group_by(jobs.Job.operation)
            ).all():
                moved.add_metric([operation], float(total))
            yield moved

            yield self._durations(s, now)
            yield from self._points(s, now)
            yield self._replication(s)

            beats = GaugeMetricFamily(
                "pgvault_worker_heartbeat_age_seconds",
                "Seconds since each worker's newest heartbeat (workers seen in the last day).",
                labels=["worker"],
            )
            for worker, newest in s.execute(
                select(jobs.Job.worker_id, func.max(jobs.Job.heartbeat_at))
                .where(
                    jobs.Job.worker_id.is_not(None),
                    jobs.Job.heartbeat_at >= now - HEARTBEAT_WINDOW,
                )
                .group_by(jobs.Job.worker_id)
            ).all():
                if worker is not None and newest is not None:
                    beats.add_metric([worker], _seconds(now, newest))
            yield beats

    def _durations(self, s: Session, now: datetime) -> Metric:
        rows = s.execute(
            select(jobs.Job.operation, jobs.Job.started_at, jobs.Job.ended_at)
            .where(
                jobs.Job.ended_at >= now - DURATION_WINDOW,
                jobs.Job.started_at.is_not(None),
                jobs.Job.status.in_(jobs.TERMINAL),
            )
            .order_by(jobs.Job.ended_at.desc())
            .limit(DURATION_ROWS)
        ).all()
        seen: dict[str, list[float]] = {}
        for operation, started, ended in rows:
            if started is not None and ended is not None:
                seen.setdefault(operation, []).append(_seconds(ended, started))
        family = HistogramMetricFamily(
            "pgvault_job_duration_seconds",
            "Durations of the jobs finished in the last 24 hours, by operation.",
            labels=["operation"],
        )
        for operation, values in sorted(seen.items()):
            buckets = [(str(b), float(sum(1 for v in values if v <= b))) for b in BUCKETS]
            buckets.append(("+Inf", float(len(values))))
            family.add_metric([operation], buckets, sum(values))
        return family

    def _replication(self, s: Session) -> Metric:
        """The replication lag the newest replica of each instance saw (cross-region restore)."""
        newest = (
            select(
                replicas.Replica.instance_id,
                func.max(replicas.Replica.point_created_at).label("newest"),
            )
            .group_by(replicas.Replica.instance_id)
            .subquery()
        )
        rows = s.execute(
            select(vaults.Vault.name, instances.Instance.name, replicas.Replica.lag_seconds)
            .join(newest, newest.c.instance_id == replicas.Replica.instance_id)
            .join(instances.Instance, instances.Instance.id == replicas.Replica.instance_id)
            .join(vaults.Vault, vaults.Vault.id == instances.Instance.vault_id)
            .where(replicas.Replica.point_created_at == newest.c.newest)
        ).all()
        family = GaugeMetricFamily(
            "pgvault_replication_lag_seconds",
            "Seconds from commit to availability in the secondary region, for the newest "
            "replicated point of each backup instance.",
            labels=["vault", "instance"],
        )
        for vault, instance, lag in rows:
            family.add_metric([vault, instance], float(lag))
        return family

    def _points(self, s: Session, now: datetime) -> Iterator[Metric]:
        rp = recovery_points.RecoveryPoint
        counted = (
            select(
                rp.instance_id,
                func.count().label("n"),
                func.max(rp.created_at).label("newest"),
                func.min(rp.created_at).label("oldest"),
                func.coalesce(func.sum(rp.stored_bytes), 0).label("stored"),
            )
            .where(rp.state == recovery_points.COMMITTED)
            .group_by(rp.instance_id)
            .subquery()
        )
        rows = s.execute(
            select(
                vaults.Vault.name,
                instances.Instance.name,
                counted.c.n,
                counted.c.newest,
                counted.c.oldest,
                counted.c.stored,
            )
            .join(vaults.Vault, vaults.Vault.id == instances.Instance.vault_id)
            .outerjoin(counted, counted.c.instance_id == instances.Instance.id)
            .where(instances.Instance.deleted_at.is_(None))
        ).all()
        labels = ["vault", "instance"]
        count = GaugeMetricFamily(
            "pgvault_recovery_points",
            "Committed recovery points per backup instance.",
            labels=labels,
        )
        age = GaugeMetricFamily(
            "pgvault_recovery_point_newest_age_seconds",
            "Seconds since the newest recovery point of each backup instance (none: absent).",
            labels=labels,
        )
        oldest_age = GaugeMetricFamily(
            "pgvault_recovery_point_oldest_age_seconds",
            "Seconds since the oldest recovery point of each backup instance (none: absent).",
            labels=labels,
        )
        stored = GaugeMetricFamily(
            "pgvault_recovery_point_stored_bytes",
            "Bytes stored by the recovery points of each backup instance.",
            labels=labels,
        )
        for vault, instance, n, newest, oldest, total in rows:
            count.add_metric([vault, instance], n or 0)
            stored.add_metric([vault, instance], float(total or 0))
            if newest is not None:
                age.add_metric([vault, instance], _seconds(now, _aware(newest, now)))
            if oldest is not None:
                oldest_age.add_metric([vault, instance], _seconds(now, _aware(oldest, now)))
        yield count
        yield age
        yield oldest_age
        yield stored


def _aware(value: datetime, now: datetime) -> datetime:
    """A column aggregate may come back naive (SQLite): it is UTC like every stored time."""
    if value.tzinfo is None and now.tzinfo is not None:
        return value.replace(tzinfo=now.tzinfo)
    return value


def registry(ctx: Context) -> CollectorRegistry:
    """A registry of its own for one app: the metadata collector only."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(MetadataCollector(ctx))
    return reg


def readiness(ctx: Context) -> dict[str, str]:
    """Each dependency's state ("ok" or "unavailable"): the metadata database and the datastore."""
    checks = {"metadata": "ok", "datastore": "ok"}
    try:
        with ctx.db.session() as s:
            s.execute(text("SELECT 1"))
    except Exception:
        log.warning("readiness: the metadata database does not answer", exc_info=True)
        checks["metadata"] = "unavailable"
    try:
        store = ctx.datastore
        root = store.local_root
        if root is not None:
            with os.scandir(root) as entries:  # missing, not a directory, unreadable: raises
                next(entries, None)
            if not os.access(root, os.R_OK | os.W_OK | os.X_OK):
                raise PermissionError("the datastore directory is not writable")
        else:
            store.exists(".pgvault-ready-probe")  # one HEAD: raises if the store is unreachable
    except Exception:
        log.warning("readiness: the datastore is not reachable", exc_info=True)
        checks["datastore"] = "unavailable"
    return checks
