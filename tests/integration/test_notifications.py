"""Vault notifications: a failing job sends exactly one alert (Apprise `json://`) to a local
HTTP receiver; the URLs are stored encrypted and never shown back; the test-send works; a
vault whose `alertsForAllJobFailures` is Disabled stays quiet.

The job fails for real: a backup of a server nobody listens on, run by the real worker pool.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from pgvault import jobs, notifications
from pgvault.errors import PgVaultError
from pgvault.instances import InstanceSpec
from tests.integration.conftest import RG, Vault
from tests.support.pg import free_port


@pytest.fixture
def metadata_url() -> None:
    """SQLite metadata is enough here (the sender reads no PostgreSQL-specific state)."""
    return None


class Receiver:
    """A local webhook endpoint that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.bodies) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.bodies)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def _failing_instance(vault: Vault) -> str:
    """An instance of a server nobody listens on: its backups fail when they connect."""
    port = free_port()
    vault.service.put_server(vault.sub, RG, "gone", "127.0.0.1", port, "eastus")
    uri = vault.secret(
        "gone-admin",
        f"Server=127.0.0.1;Port={port};Database=postgres;User Id=postgres;Password=x;",
    )
    db_id = vault.service.get_server(vault.sub, RG, "gone").database_id("shop")
    spec = InstanceSpec(db_id, f"{vault.vault_id}/backupPolicies/weekly", uri)
    vault.service.put_instance(vault.sub, RG, vault.name, "gone-shop", spec)
    return "gone-shop"


def test_a_failing_job_sends_one_webhook(vault: Vault, receiver: Receiver) -> None:
    svc, sub = vault.service, vault.sub
    url = f"json://127.0.0.1:{receiver.port}/hook?token=webhook-secret-123"
    _, summary = svc.put_notifications(sub, RG, vault.name, [url])
    assert summary["destinations"] == 1
    assert summary["schemes"] == ["json"]
    assert "webhook-secret-123" not in json.dumps(summary)
    with vault.ctx.db.session() as s:  # encrypted at rest
        row = s.scalar(select(notifications.VaultNotifications))
        assert row is not None
        assert b"webhook-secret-123" not in row.ciphertext

    instance = _failing_instance(vault)
    job = vault.backup(instance)
    assert job.status == jobs.FAILED
    bodies = receiver.wait_for(1)
    time.sleep(1.5)  # a few heartbeats and sweeps: none may send it again
    assert len(receiver.bodies) == 1, receiver.bodies
    alert = bodies[0]
    assert alert["type"] == "failure"
    assert instance in alert["title"]
    assert vault.name in alert["title"]
    assert job.id in alert["message"]

    result = svc.test_notifications(sub, RG, vault.name)
    assert result == {"destinations": 1, "delivered": True, "alertsForAllJobFailures": "Enabled"}
    assert receiver.wait_for(2)[1]["type"] == "info"

    off = {
        "monitoringSettings": {"azureMonitorAlertSettings": {"alertsForAllJobFailures": "Disabled"}}
    }
    svc.put_vault(sub, RG, vault.name, "eastus", off, {})
    assert vault.backup(instance).status == jobs.FAILED
    time.sleep(1.5)
    assert len(receiver.bodies) == 2, "a vault with job-failure alerts disabled sent one"


def test_bad_urls_are_refused_without_echoing_them(vault: Vault) -> None:
    with pytest.raises(PgVaultError) as caught:
        vault.service.put_notifications(vault.sub, RG, vault.name, ["no-scheme-secret-456"])
    assert "secret-456" not in caught.value.message
    _, summary = vault.service.get_notifications(vault.sub, RG, vault.name)
    assert summary["destinations"] == 0
    with pytest.raises(PgVaultError):  # nothing to test-send to
        vault.service.test_notifications(vault.sub, RG, vault.name)
