"""Rehydration rules: an archived point goes back to the vault tier before it is restored.

The rehydrated copy stays in the vault tier for the requested duration (10-30 days,
15 by default, as in Azure); another restore within that window needs no
rehydration; the housekeeping sweep removes the copy when the window ends.
"""

from __future__ import annotations

from datetime import datetime

from pgvault.errors import BadRequest, Code, UserError
from pgvault.recovery_points import ARCHIVE_STORE, VAULT_STORE, RecoveryPoint
from pgvault.recurrence import Duration

DEFAULT_DURATION = "P15D"
HIGH_PRIORITY = 10
PRIORITIES = ("standard", "high")


def duration_days(text: str | None) -> int:
    """The rehydration duration in days: ISO 8601 `P10D`-`P30D` (default 15)."""
    duration = Duration.parse(text or DEFAULT_DURATION)
    days = duration.nominal_days()
    if days != int(days) or not 10 <= days <= 30:
        raise BadRequest(
            f"Rehydration duration {text!r} is out of range: use P10D to P30D (default P15D).",
            code=Code.UserErrorInvalidRehydrationDuration,
            target="rehydrationRetentionDuration",
        )
    return int(days)


def check_priority(priority: str | None) -> str:
    value = (priority or "Standard").lower()
    if value not in PRIORITIES:
        raise BadRequest(
            f"Rehydration priority {priority!r} is not Standard or High.",
            code=Code.UserErrorInvalidRehydrationPriority,
            target="rehydrationPriority",
        )
    return "High" if value == "high" else "Standard"


def rehydrated(point: RecoveryPoint, now: datetime) -> bool:
    return point.rehydrated_until is not None and point.rehydrated_until > now


def check_source(
    point: RecoveryPoint, store: str, priority: str | None, duration: str | None, now: datetime
) -> None:
    """The requested source store must hold the point (archive restores need rehydration)."""
    if store.lower() == VAULT_STORE.lower():
        if not (point.in_vault or rehydrated(point, now)):
            raise UserError(
                f"Recovery point {point.id} is in the archive tier only.",
                code=Code.UserErrorRecoveryPointInArchive,
                recommended_action="Restore with sourceDataStoreType ArchiveStore and a "
                "rehydration priority and duration (CLI: --rehydrate), or rehydrate it first.",
            )
        return
    if store.lower() != ARCHIVE_STORE.lower():
        raise BadRequest(f"Unknown source datastore {store!r}.", code=Code.BadParameter)
    if not point.in_archive:
        raise UserError(
            f"Recovery point {point.id} has no archive copy; restore from VaultStore.",
            code=Code.UserErrorInvalidSourceDataStore,
        )
    check_priority(priority)
    duration_days(duration)


def needed(point: RecoveryPoint, store: str, now: datetime) -> bool:
    return (
        store.lower() == ARCHIVE_STORE.lower() and not point.in_vault and not rehydrated(point, now)
    )
