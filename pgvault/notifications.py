"""Where a vault's alerts go: Apprise URLs per vault (a pgvault extension), stored encrypted.

Azure decides *whether* a vault alerts on job failures with the vault's
`monitoringSettings.azureMonitorAlertSettings.alertsForAllJobFailures`; Azure Monitor then
decides where. pgvault has no Azure Monitor, so each vault holds a list of Apprise URLs
(e-mail, Slack, Teams, webhooks, ntfy, ...). A URL usually carries a credential (a token,
a password, a webhook secret), so the list is a secret: encrypted with the master key like
Key Vault secrets, never logged and never returned; reads show only how many there are and
their schemes.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from pgvault.crypto import Cipher
from pgvault.errors import BadRequest, Code
from pgvault.orm import Base, UTCDateTime

MAX_URLS = 20
MAX_URL_LENGTH = 2000


class VaultNotifications(Base):
    """The encrypted Apprise URL list of one vault."""

    __tablename__ = "vault_notifications"

    vault_id: Mapped[str] = mapped_column(
        ForeignKey("backup_vaults.id", ondelete="CASCADE"), primary_key=True
    )
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    schemes: Mapped[str] = mapped_column(String(500), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


def alerts_for_job_failures(vault_properties: dict[str, Any]) -> bool:
    """The vault's Azure switch (`Enabled` unless set otherwise)."""
    monitoring = vault_properties.get("monitoringSettings") or {}
    settings = monitoring.get("azureMonitorAlertSettings") or {}
    return str(settings.get("alertsForAllJobFailures", "Enabled")).lower() == "enabled"


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def check_urls(urls: list[str]) -> list[str]:
    """Apprise-style URLs (`scheme://...`), at most MAX_URLS; bad input is refused whole.

    The message names the position of a bad URL, never its text (it may hold a secret)."""
    if len(urls) > MAX_URLS:
        raise BadRequest(
            f"A vault takes at most {MAX_URLS} notification URLs, not {len(urls)}.",
            code=Code.BadParameter,
            target="urls",
        )
    cleaned = []
    for n, url in enumerate(urls):
        url = str(url).strip()
        scheme = _scheme(url)
        if not scheme or not scheme.isascii() or len(url) > MAX_URL_LENGTH:
            raise BadRequest(
                f"Notification URL #{n + 1} is not an Apprise URL (scheme://...; e.g. "
                "mailtos://, slack://, msteams://, ntfy://, json:// or jsons:// for a webhook).",
                code=Code.BadParameter,
                target=f"urls[{n}]",
            )
        cleaned.append(url)
    return cleaned


def _associated(vault_id: str) -> str:
    return f"vault-notifications/{vault_id}"


def put(s: Session, cipher: Cipher, vault_id: str, urls: list[str], now: datetime) -> int:
    """Replace the vault's URL list (an empty list removes it); returns how many are kept."""
    urls = check_urls(urls)
    row = s.get(VaultNotifications, vault_id)
    if not urls:
        if row is not None:
            s.delete(row)
        return 0
    blob = cipher.encrypt(json.dumps(urls).encode(), _associated(vault_id))
    schemes = ",".join(sorted({_scheme(u) for u in urls}))[:500]
    if row is None:
        s.add(
            VaultNotifications(vault_id=vault_id, ciphertext=blob, schemes=schemes, updated_at=now)
        )
    else:
        row.ciphertext, row.schemes, row.updated_at = blob, schemes, now
    return len(urls)


def urls(s: Session, cipher: Cipher, vault_id: str) -> list[str]:
    """The vault's URLs in clear, for the sender only."""
    row = s.get(VaultNotifications, vault_id)
    if row is None:
        return []
    found: list[str] = json.loads(cipher.decrypt(row.ciphertext, _associated(vault_id)))
    return found


def summary(s: Session, cipher: Cipher, vault_id: str) -> dict[str, Any]:
    """What may be shown: how many destinations and their schemes, never the URLs."""
    row = s.get(VaultNotifications, vault_id)
    if row is None:
        return {"destinations": 0, "schemes": [], "updatedOn": None}
    count = len(urls(s, cipher, vault_id))
    return {
        "destinations": count,
        "schemes": [x for x in row.schemes.split(",") if x],
        "updatedOn": row.updated_at.isoformat().replace("+00:00", "Z"),
    }


def delete_for_vault(s: Session, vault_id: str) -> None:
    row = s.get(VaultNotifications, vault_id)
    if row is not None:
        s.delete(row)
