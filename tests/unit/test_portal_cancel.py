"""Cancel job in the portal, in-process with no workers (so a queued job stays queued): the
button on a queued job cancels it (POST with the form token, audited); a restore already in
its data-transfer phase shows the button disabled with the reason, and a POST is refused
with JobCannotBeCancelled, as the API's backupJobs/{id}/cancel refuses it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from pgvault import jobs
from pgvault.config import Settings
from pgvault.context import Context
from pgvault.instances import InstanceSpec
from pgvault.server import app_with_portal
from pgvault.services import Service

RG = "default"


@dataclass
class Portal:
    client: TestClient
    svc: Service
    sub: str

    def job_url(self, job_id: str) -> str:
        return f"/vaults/{self.sub}/{RG}/vc/jobs/{job_id}"

    def csrf(self, html: str) -> str:
        found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
        assert found
        return found.group(1)


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    home = tmp_path_factory.mktemp("cancel") / "home"
    home.mkdir()
    ctx = Context.create(Settings(home=home, datastore_url="memory://"))
    app = app_with_portal(ctx, start_workers=False)
    with TestClient(app) as client:
        svc: Service = app.state.service
        sub = svc.list_subscriptions()[0].id
        svc.put_server(sub, RG, "pgc", "127.0.0.1", 5432, "eastus")
        svc.put_keyvault(sub, RG, "kvcancel", "eastus")
        svc.put_secret(sub, RG, "kvcancel", "s", "Server=127.0.0.1;User Id=u;Password=p;", None)
        vault, _ = svc.put_vault(sub, RG, "vc", "eastus", {}, {})
        svc.put_policy(sub, RG, "vc", "p", {})
        spec = InstanceSpec(
            svc.get_server(sub, RG, "pgc").database_id("db"),
            f"{vault.arm_id}/backupPolicies/p",
            f"{ctx.base_url}/keyvaults/kvcancel/secrets/s",
        )
        svc.put_instance(sub, RG, "vc", "i1", spec)
        creds = json.loads(ctx.settings.credentials_file.read_text())
        signin = {"kind": "service-principal", "name": creds["clientId"],
                  "secret": creds["clientSecret"]}  # fmt: skip
        assert client.post("/signin", data=signin, follow_redirects=False).status_code == 303
        yield Portal(client, svc, sub)
    ctx.db.dispose()


def test_a_queued_job_is_cancelled_from_its_page(portal: Portal) -> None:
    job = portal.svc.adhoc_backup(portal.sub, RG, "vc", "i1", None, None)
    html = portal.client.get(portal.job_url(job.id)).text
    assert ">Cancel job</button>" in html
    answer = portal.client.post(
        portal.job_url(job.id) + "/cancel", data={"csrf": portal.csrf(html)},
        follow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 303
    assert portal.svc.get_job(portal.sub, RG, "vc", job.id).job.status == jobs.CANCELLED
    assert "Cancel job" not in portal.client.get(portal.job_url(job.id)).text
    events = portal.svc.access.audit_events(None, limit=20)
    assert any(e.action.endswith("backupJobs/cancel/action") for e in events)


def test_without_the_form_token_nothing_is_cancelled(portal: Portal) -> None:
    job = portal.svc.adhoc_backup(portal.sub, RG, "vc", "i1", None, None)
    answer = portal.client.post(portal.job_url(job.id) + "/cancel", data={})
    assert answer.status_code == 403
    assert portal.svc.get_job(portal.sub, RG, "vc", job.id).job.status == jobs.IN_PROGRESS
    portal.svc.cancel_job(portal.sub, RG, "vc", job.id)


def test_a_restore_transferring_data_shows_why_it_cannot_be_cancelled(portal: Portal) -> None:
    with portal.svc.ctx.db.session() as s:
        vault_id = portal.svc.get_vault(portal.sub, RG, "vc").id
        job = jobs.create(s, vault_id=vault_id, instance_id=None, operation=jobs.RESTORE,
                          params={}, now=portal.svc.ctx.clock.now())  # fmt: skip
        job.phase, job.worker_id = "Transferring data", "w1"
        job_id = job.id
    html = portal.client.get(portal.job_url(job_id)).text
    assert re.search(r"<button[^>]*disabled[^>]*>Cancel job</button>", html)
    assert "can no longer be cancelled" in html
    answer = portal.client.post(
        portal.job_url(job_id) + "/cancel", data={"csrf": portal.csrf(html)}
    )
    assert answer.status_code == 409
    assert "JobCannotBeCancelled" in answer.text
    assert portal.svc.get_job(portal.sub, RG, "vc", job_id).job.status == jobs.IN_PROGRESS
