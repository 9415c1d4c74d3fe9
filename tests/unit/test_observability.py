"""Observability: /metrics (Prometheus, authenticated), /readyz, request ids and JSON logs."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from pgvault import instances, jobs, logs, policies, recovery_points, servers, vaults, workers
from pgvault.api.app import create_app
from pgvault.clock import Clock, FrozenClock
from pgvault.config import Settings
from pgvault.context import Context
from tests.support.apiapp import Api

DP = "providers/Microsoft.DataProtection/backupVaults"
PG = "providers/Microsoft.DBforPostgreSQL/servers"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def api_clock() -> Clock | None:
    return FrozenClock(NOW)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _seed(api: Api, vault_name: str) -> dict[str, Any]:
    """A vault with two instances, three points, and jobs in every state, written directly."""
    rg = api.rg("metrics")
    assert api.put(rg, {"location": "eastus"}).status_code in (200, 201)
    assert api.put(f"{rg}/{DP}/{vault_name}", {"location": "eastus"}).status_code in (200, 201)
    srv = f"{vault_name}-pg"
    body = {"location": "eastus", "properties": {"fullyQualifiedDomainName": "db.example"}}
    assert api.put(f"{rg}/{PG}/{srv}", body).status_code == 200
    with api.ctx.db.session() as s:
        vault = s.query(vaults.Vault).filter_by(name=vault_name).one()
        server = s.query(servers.Server).filter_by(name=srv).one()
        policy = policies.Policy(
            id=str(uuid.uuid4()), vault_id=vault.id, name="p", name_key="p",
            properties={}, created_at=NOW,
        )  # fmt: skip
        s.add(policy)
        s.flush()
        made = {}
        for name in ("shop", "crm"):
            inst = instances.Instance(
                id=str(uuid.uuid4()), vault_id=vault.id, name=name, name_key=name,
                server_id=server.id, database=name, datasource_key=f"{vault.id}/{name}",
                policy_id=policy.id, secret_uri="https://kv/secrets/s", protection_state="ProtectionConfigured",
                created_at=NOW,
            )  # fmt: skip
            s.add(inst)
            made[name] = inst.id
        s.flush()
        for age_hours in (30, 2):  # shop: two points, the newest two hours old
            s.add(_point(vault.id, made["shop"], NOW - timedelta(hours=age_hours), 1000))
        s.add(_point(vault.id, made["crm"], NOW - timedelta(hours=5), 500))

        def job(
            op: str, status: str, minutes: float | None, nbytes: int, worker: str | None
        ) -> None:
            j = jobs.create(
                s, vault_id=vault.id, instance_id=None, operation=op, params={}, now=NOW
            )
            j.status, j.bytes_done, j.worker_id = status, nbytes, worker
            if minutes is not None:
                j.started_at = NOW - timedelta(hours=1)
                j.ended_at = j.started_at + timedelta(minutes=minutes)
            if worker is not None:
                j.heartbeat_at = NOW - timedelta(seconds=7)

        job(jobs.BACKUP, jobs.COMPLETED, 0.5, 3000, "w1")  # 30 s
        job(jobs.BACKUP, jobs.COMPLETED, 10, 4000, "w1")  # 600 s
        job(jobs.BACKUP, jobs.FAILED, 1, 0, "w2")  # 60 s
        job(jobs.RESTORE, jobs.COMPLETED, 2, 2500, "w2")  # 120 s
        job(jobs.BACKUP, jobs.IN_PROGRESS, None, 0, None)  # queued
        job(jobs.BACKUP, jobs.IN_PROGRESS, None, 0, None)  # queued
    return made


def _point(
    vault_id: str, instance_id: str, at: datetime, size: int
) -> recovery_points.RecoveryPoint:
    return recovery_points.RecoveryPoint(
        id=uuid.uuid4().hex, instance_id=instance_id, vault_id=vault_id, created_at=at,
        location=f"points/{uuid.uuid4().hex}", stored_bytes=size, dump_bytes=size, manifest={},
    )  # fmt: skip


def test_metrics_match_the_seeded_jobs_and_points(api: Api) -> None:
    _seed(api, "mv")
    r = api.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    got = _samples(r.text)

    def val(name: str, **labels: str) -> float:
        return got[(name, tuple(sorted(labels.items())))]

    assert val("pgvault_jobs", operation="Backup", status="Completed") == 2
    assert val("pgvault_jobs", operation="Backup", status="Failed") == 1
    assert val("pgvault_jobs", operation="Backup", status="InProgress") == 2
    assert val("pgvault_jobs", operation="Restore", status="Completed") == 1
    assert val("pgvault_queue_depth") == 2
    assert val("pgvault_job_transferred_bytes_total", operation="Backup") == 7000
    assert val("pgvault_job_transferred_bytes_total", operation="Restore") == 2500
    assert val("pgvault_job_duration_seconds_count", operation="Backup") == 3
    assert val("pgvault_job_duration_seconds_sum", operation="Backup") == 690
    assert val("pgvault_job_duration_seconds_bucket", operation="Backup", le="30.0") == 1
    assert val("pgvault_job_duration_seconds_bucket", operation="Backup", le="60.0") == 2
    assert val("pgvault_job_duration_seconds_bucket", operation="Backup", le="+Inf") == 3
    assert val("pgvault_job_duration_seconds_count", operation="Restore") == 1
    assert val("pgvault_recovery_points", vault="mv", instance="shop") == 2
    assert val("pgvault_recovery_points", vault="mv", instance="crm") == 1
    assert val("pgvault_recovery_point_newest_age_seconds", vault="mv", instance="shop") == 7200
    assert val("pgvault_recovery_point_newest_age_seconds", vault="mv", instance="crm") == 18000
    assert val("pgvault_recovery_point_stored_bytes", vault="mv", instance="shop") == 2000
    assert val("pgvault_worker_heartbeat_age_seconds", worker="w1") == 7
    assert val("pgvault_worker_heartbeat_age_seconds", worker="w2") == 7


def test_metrics_need_a_token(api: Api) -> None:
    r = api.client.get("/metrics")
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "AuthenticationFailed"
    assert "pgvault_" not in r.text


def test_metrics_need_a_reader_role_at_root(api: Api) -> None:
    props = api.principal(f"nobody-{uuid.uuid4().hex[:6]}")
    headers = api.sign_in(props)
    r = api.client.get("/metrics", headers=headers)
    assert r.status_code == 403, r.text
    assert "Microsoft.Insights/metrics/read" in r.text
    # a Reader of one subscription is not a reader of the whole service
    api.assign(f"/subscriptions/{api.sub}", "Reader", props["principalId"])
    assert api.client.get("/metrics", headers=headers).status_code == 403


@pytest.mark.parametrize("role", ["Reader", "Backup Reader"])
def test_reader_roles_at_root_read_metrics(api: Api, role: str) -> None:
    props = api.principal(f"watcher-{uuid.uuid4().hex[:6]}")
    api.assign("", role, props["principalId"])  # scope "/"
    r = api.client.get("/metrics", headers=api.sign_in(props))
    assert r.status_code == 200, r.text
    assert any(f.name == "pgvault_queue_depth" for f in text_string_to_metric_families(r.text))


def test_request_id_is_echoed(api: Api) -> None:
    r = api.get("/subscriptions")
    rid = r.headers["x-ms-request-id"]
    assert uuid.UUID(rid)
    mine = str(uuid.uuid4())
    r = api.client.get("/subscriptions", headers={**api.admin, "x-ms-client-request-id": mine})
    assert r.headers["x-ms-request-id"] == mine
    assert r.headers["x-ms-client-request-id"] == mine


@pytest.mark.parametrize("sent", ["a" * 65, "bad value", "x\u00e9".encode(), "<script>", "-lead"])
def test_a_client_request_id_that_is_no_short_token_is_not_echoed(
    api: Api, sent: str | bytes
) -> None:
    r = api.client.get(
        "/subscriptions",
        headers={**api.admin, "x-ms-client-request-id": sent},
    )
    assert r.headers["x-ms-request-id"] != sent
    assert uuid.UUID(r.headers["x-ms-request-id"])
    assert "x-ms-client-request-id" not in r.headers


@pytest.fixture
def file_app(tmp_path: Path) -> Iterator[tuple[Context, TestClient, Path]]:
    datastore = tmp_path / "datastore"
    settings = Settings(home=tmp_path / "home", datastore_url=datastore.as_uri())
    ctx = Context.create(settings)
    with TestClient(create_app(ctx, start_workers=False), raise_server_exceptions=False) as c:
        yield ctx, c, datastore
    ctx.db.dispose()


def test_readyz_is_200_when_metadata_and_datastore_answer(
    file_app: tuple[Context, TestClient, Path],
) -> None:
    _, client, _ = file_app
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {"metadata": "ok", "datastore": "ok"}}


@pytest.mark.parametrize("how", ["removed", "a file", "unreadable"])
def test_readyz_is_503_naming_the_datastore(
    file_app: tuple[Context, TestClient, Path], how: str
) -> None:
    _, client, datastore = file_app
    assert datastore.is_dir()
    if how == "unreadable" and os.geteuid() == 0:
        pytest.skip("root reads any directory")
    if how != "unreadable":
        shutil.rmtree(datastore)
        if how == "a file":
            datastore.write_bytes(b"")
    else:
        datastore.chmod(0o000)
    try:
        r = client.get("/readyz")
    finally:
        if datastore.is_dir():
            datastore.chmod(0o700)
    assert r.status_code == 503, r.text
    body = r.json()
    assert body == {"status": "not ready", "checks": {"metadata": "ok", "datastore": "unavailable"}}
    assert str(datastore) not in r.text
    assert client.get("/healthz").status_code == 200  # liveness is unchanged


def test_readyz_is_503_naming_the_metadata_database(
    file_app: tuple[Context, TestClient, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, client, _ = file_app

    def broken() -> Any:
        raise OSError("connection refused to 10.0.0.9:5432")

    monkeypatch.setattr(ctx.db, "session", broken)
    r = client.get("/readyz")
    assert r.status_code == 503, r.text
    assert r.json()["checks"] == {"metadata": "unavailable", "datastore": "ok"}
    assert "10.0.0.9" not in r.text


def test_readyz_needs_no_token(api: Api) -> None:
    r = api.client.get("/readyz")  # memory datastore, SQLite metadata
    assert r.status_code == 200, r.text


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The `pgvault` loggers' records, formatted as JSON lines into a buffer."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("pgvault")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_json_log_lines_carry_the_request_id(
    file_app: tuple[Context, TestClient, Path], json_log: io.StringIO
) -> None:
    _, client, datastore = file_app
    shutil.rmtree(datastore)  # /readyz then logs a warning inside the request
    mine = f"corr-{uuid.uuid4().hex[:8]}"
    assert client.get("/readyz", headers={"x-ms-client-request-id": mine}).status_code == 503
    theirs = client.get("/readyz").headers["x-ms-request-id"]
    logging.getLogger("pgvault.test").info("outside any request")
    lines = _lines(json_log)
    warned = [e for e in lines if e["message"].startswith("readiness: the datastore")]
    assert [e["request_id"] for e in warned] == [mine, theirs]
    assert all(e["level"] == "WARNING" and e["logger"] == "pgvault.observability" for e in warned)
    assert all(datetime.fromisoformat(e["time"]).tzinfo is not None for e in warned)
    assert all("job_id" not in e for e in warned)
    outside = next(e for e in lines if e["message"] == "outside any request")
    assert "request_id" not in outside
    assert "job_id" not in outside


def test_json_log_lines_carry_the_job_id(
    api: Api, json_log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    rg = api.rg("logs")
    assert api.put(rg, {"location": "eastus"}).status_code in (200, 201)
    assert api.put(f"{rg}/{DP}/jv", {"location": "eastus"}).status_code in (200, 201)
    with api.ctx.db.session() as s:
        vault_id = s.query(vaults.Vault).filter_by(name="jv").one().id
        queued = jobs.create(
            s, vault_id=vault_id, instance_id=None, operation="Backup", params={}, now=NOW,
            priority=100,
        )  # fmt: skip
        wanted = queued.id
    pool = workers.WorkerPool(api.ctx, 1)
    ran: list[str] = []

    class Kind:
        def run(self, ctx: Context, job_id: str) -> None:
            ran.append(job_id)
            logging.getLogger("pgvault.jobkinds.fake").info("working on it")
            pool._stop.set()

    monkeypatch.setattr(workers, "kind_for", lambda operation: Kind())
    pool._loop(0)  # claims the most urgent job, runs it, stops
    assert ran == [wanted]
    assert logs.job_id.get() is None
    lines = _lines(json_log)
    working = next(e for e in lines if e["message"] == "working on it")
    assert working["job_id"] == wanted
    assert "request_id" not in working
    started = next(
        e for e in lines if e["message"].startswith("worker ") and wanted in e["message"]
    )
    assert started["job_id"] == wanted
