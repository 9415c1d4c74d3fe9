"""Observability against a real `pgvault serve`: /metrics after a real backup, /readyz,
request ids, and JSON log lines carrying the request and job ids (PGVAULT_LOG_FORMAT=json)."""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import HOST, SOURCE_DB, PgvaultServer, superuser_connstr
from tests.support.pg import PgCluster, free_port

REGION = "eastus"
VAULT = "v1"
INSTANCE = "shop1"


@pytest.fixture
def json_server(request: pytest.FixtureRequest) -> Iterator[PgvaultServer]:
    base = Path(tempfile.mkdtemp(prefix="pgvault-e2e-metrics-"))
    home = base / "home"
    home.mkdir()
    server = PgvaultServer(home, free_port(), base / "serve.log")
    server.env["PGVAULT_LOG_FORMAT"] = "json"
    failed_before = request.session.testsfailed
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if request.session.testsfailed > failed_before and not server.log_reported:
            print(f"\n----- pgvault serve log ({server.url}) -----\n{server.log()[-20000:]}")
        shutil.rmtree(base, ignore_errors=True)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _json_lines(log: str) -> list[dict[str, Any]]:
    entries = []
    for line in log.splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    return entries


def test_metrics_after_a_real_backup(json_server: PgvaultServer, source_pg: PgCluster) -> None:
    srv = json_server
    srv.cli("server", "add", "--name", "src", "--host", HOST, "--port", str(source_pg.port),
            "--region", REGION)  # fmt: skip
    srv.cli("keyvault", "create", "--name", "kv1", "--region", REGION)
    secret = srv.cli_json(
        "keyvault", "secret", "set", "--vault-name", "kv1", "--name", "srcpw",
        input=superuser_connstr(source_pg),
    )["properties"]["secretUri"]  # fmt: skip
    vault = srv.cli_json("vault", "create", "--name", VAULT, "--region", REGION)
    group = vault["id"].split("/providers/", 1)[0]
    for role in ("Reader", "Key Vault Secrets User"):
        srv.grant(f"vault:{VAULT}", role, group)
    srv.cli("policy", "create", "--vault-name", VAULT, "--name", "weekly")
    srv.cli("instance", "create", "--vault-name", VAULT, "--server", "src", "--database",
            SOURCE_DB, "--policy", "weekly", "--secret", secret, "--name", INSTANCE)  # fmt: skip
    job = srv.cli_json("backup", "now", "--vault-name", VAULT, "--instance", INSTANCE, "--wait")
    assert job["properties"]["status"] == "Completed", job["properties"]["errorDetails"]
    job_id = job["name"]

    assert srv.api("GET", "/metrics").status_code == 401
    nobody = srv.cli_json("principal", "create", "--name", "nobody", "--type", "service-principal")
    denied = srv.api(
        "GET", "/metrics", token=srv.client_token(nobody["clientId"], nobody["secret"])
    )
    assert denied.status_code == 403, denied.text
    srv.grant(nobody["clientId"], "Backup Reader", "/")  # a reader of the whole service
    watcher = srv.client_token(nobody["clientId"], nobody["secret"])
    assert srv.api("GET", "/metrics", token=watcher).status_code == 200

    correlation = f"scrape-{uuid.uuid4().hex[:8]}"
    r = srv.api(
        "GET", "/metrics", token=srv.token(), headers={"x-ms-client-request-id": correlation}
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-ms-request-id"] == correlation
    got = _samples(r.text)

    def val(name: str, **labels: str) -> float:
        return got[(name, tuple(sorted(labels.items())))]

    assert val("pgvault_jobs", operation="Backup", status="Completed") == 1
    assert val("pgvault_queue_depth") == 0
    assert val("pgvault_queue_oldest_age_seconds") == 0
    assert val("pgvault_job_duration_seconds_count", operation="Backup") == 1
    assert val("pgvault_job_duration_seconds_sum", operation="Backup") > 0
    assert val("pgvault_job_transferred_bytes_total", operation="Backup") > 0
    assert val("pgvault_recovery_points", vault=VAULT, instance=INSTANCE) == 1
    age = val("pgvault_recovery_point_newest_age_seconds", vault=VAULT, instance=INSTANCE)
    assert 0 <= age < 3600
    oldest = val("pgvault_recovery_point_oldest_age_seconds", vault=VAULT, instance=INSTANCE)
    assert oldest == age  # one point: the oldest is the newest
    assert val("pgvault_recovery_point_stored_bytes", vault=VAULT, instance=INSTANCE) > 0
    beats = [k for k in got if k[0] == "pgvault_worker_heartbeat_age_seconds"]
    assert beats, r.text

    ready = srv.api("GET", "/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "checks": {"metadata": "ok", "datastore": "ok"}}

    entries = _json_lines(srv.log())
    assert entries, srv.log()
    assert all({"time", "level", "logger", "message"} <= e.keys() for e in entries)
    in_job = [e for e in entries if e.get("job_id") == job_id]
    assert in_job, f"no log line names job {job_id}"
    in_request = [e for e in entries if e.get("request_id") == correlation]
    assert in_request, f"no log line names request {correlation}"
    log = srv.log()
    assert nobody["secret"] not in log
    assert source_pg.superuser_password not in log
