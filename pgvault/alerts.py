"""Alerts: a failed job, a protection error or a missed schedule, sent with Apprise.

Whether a vault alerts is its Azure setting (`alertsForAllJobFailures`); where to is its
Apprise URL list (`pgvault.notifications`). The URLs are read in a short transaction and
sent from a daemon thread afterwards: sending never holds a metadata transaction, never
delays the job or the scheduler, and a destination that fails or hangs is only logged
(without its URL, which may carry a credential).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from pgvault import instances, jobs, notifications, vaults
from pgvault.context import Context

log = logging.getLogger("pgvault.alerts")

JOB_FAILED = "JobFailed"
PROTECTION_ERROR = "ProtectionError"
MISSED_SCHEDULE = "MissedSchedule"
TEST = "Test"


@dataclass(frozen=True)
class Alert:
    kind: str
    title: str
    body: str


def deliver(urls: list[str], alert: Alert) -> bool:
    """Send `alert` to every URL now (Apprise); True if every destination took it."""
    import apprise  # imported when an alert is sent: the API process does not pay for it

    sender = apprise.Apprise()
    for url in urls:
        sender.add(url)
    if len(sender) != len(urls):
        log.warning(
            "%d of %d notification URLs were not understood", len(urls) - len(sender), len(urls)
        )
    if not len(sender):
        return False
    notify_type = apprise.NotifyType.INFO if alert.kind == TEST else apprise.NotifyType.FAILURE
    ok = bool(sender.notify(title=alert.title, body=alert.body, notify_type=notify_type))
    if not ok:
        log.warning("a %s alert was not delivered to every destination", alert.kind)
    return ok and len(sender) == len(urls)


def _send_later(urls: list[str], alert: Alert) -> threading.Thread:
    def run() -> None:
        try:
            deliver(urls, alert)
        except Exception:
            log.exception("sending a %s alert failed", alert.kind)

    thread = threading.Thread(target=run, name="pgvault-alert", daemon=True)
    thread.start()
    return thread


def for_vault(ctx: Context, vault_id: str, alert: Alert) -> threading.Thread | None:
    """Send `alert` to the vault's destinations in the background, if it alerts at all."""
    try:
        with ctx.db.session() as s:
            vault = vaults.by_id(s, vault_id)
            if alert.kind != TEST and not notifications.alerts_for_job_failures(vault.properties):
                return None
            urls = notifications.urls(s, ctx.cipher, vault_id)
    except Exception:  # an alert must never fail what raised it
        log.exception("reading the notification settings of a vault failed")
        return None
    return _send_later(urls, alert) if urls else None


def job_finished(ctx: Context, job_id: str) -> threading.Thread | None:
    """After a job ended: a Failed one alerts its vault (once: called once per job end)."""
    try:
        with ctx.db.session() as s:
            job = jobs.get(s, job_id)
            if job.status != jobs.FAILED:
                return None
            vault = vaults.by_id(s, job.vault_id)
            inst = instances.by_id(s, job.instance_id) if job.instance_id else None
            what = f"{job.operation} of {inst.name}" if inst else job.operation
            alert = Alert(
                JOB_FAILED,
                f"pgvault: {what} failed in vault {vault.name}",
                f"Job {job.id} ({job.operation}) failed at {job.ended_at}.\n"
                f"Error {job.error_code}: {job.error_message}\n"
                f"What to do: {job.recommended_action or 'see `pgvault job show --id ' + job.id + '`'}",
            )
            vault_id = vault.id
    except Exception:
        log.exception("preparing the alert for job %s failed", job_id)
        return None
    return for_vault(ctx, vault_id, alert)


def protection_error(ctx: Context, vault_id: str, instance: str, message: str) -> None:
    """A protected instance could not be scheduled or checked."""
    alert = Alert(
        PROTECTION_ERROR,
        f"pgvault: protection error on {instance}",
        f"Backup instance {instance} could not be protected: {message}",
    )
    for_vault(ctx, vault_id, alert)


def missed_schedule(
    ctx: Context, vault_id: str, instance: str, slot: datetime, now: datetime
) -> None:
    """A scheduled backup starts late (pgvault was down or busy past its slot)."""
    late = int((now - slot).total_seconds())
    alert = Alert(
        MISSED_SCHEDULE,
        f"pgvault: missed backup schedule of {instance}",
        f"The scheduled backup of {instance} for {slot.isoformat()} starts {late} s late "
        f"(at {now.isoformat()}); earlier missed slots are not run again.",
    )
    for_vault(ctx, vault_id, alert)
