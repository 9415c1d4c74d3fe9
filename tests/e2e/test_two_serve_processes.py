"""Two `pgvault serve` processes on one PostgreSQL metadata database and one datastore.

Each process has its own PGVAULT_HOME (own token-signing key; the second has no admin
credentials) and both share PGVAULT_DATABASE_URL, PGVAULT_DATASTORE_URL,
PGVAULT_ARCHIVE_URL and PGVAULT_MASTER_KEY; both run their scheduler every second.
An hourly policy whose anchor lies years back has its next slot moved to a few
seconds from now: exactly one scheduled backup must come of it, and complete.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import HOST, PgvaultServer, superuser_connstr
from tests.support.pg import PgCluster, free_port

REGION = "eastus"
VAULT = "v1"
INSTANCE = "tiny1"
DATABASE = "tiny"
METADATA = "pgvault_meta"


@pytest.fixture(scope="module")
def shared_pg() -> Iterator[PgCluster]:
    """One cluster for both: the pgvault metadata database and the database backed up."""
    cluster = PgCluster.start("e2e-two-serve")
    try:
        cluster.create_database(METADATA)
        cluster.create_database(DATABASE)
        cluster.execute(
            "CREATE TABLE notes (id int PRIMARY KEY, body text);"
            " INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 50) AS g",
            dbname=DATABASE,
        )
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def two_servers(shared_pg: PgCluster) -> Iterator[tuple[PgvaultServer, PgvaultServer]]:
    base = Path(tempfile.mkdtemp(prefix="pgvault-e2e-two-"))
    shared = {
        "PGVAULT_DATABASE_URL": shared_pg.superuser_url(METADATA),
        "PGVAULT_DATASTORE_URL": (base / "datastore").as_uri(),
        "PGVAULT_ARCHIVE_URL": (base / "archive").as_uri(),
        "PGVAULT_MASTER_KEY": secrets.token_hex(32),
        "PGVAULT_SCHEDULER_SECONDS": "1",
    }
    servers: list[PgvaultServer] = []
    try:
        for n in (1, 2):  # one after the other: the first bootstraps the admin principal
            home = base / f"home{n}"
            home.mkdir()
            server = PgvaultServer(home, free_port(), base / f"serve{n}.log")
            server.env.update(shared)
            servers.append(server)
            server.start()
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _ok(resp: Any) -> Any:
    assert resp.status_code in (200, 201, 202), resp.text
    return resp.json()


def test_two_processes_take_one_scheduled_backup(
    two_servers: tuple[PgvaultServer, PgvaultServer], shared_pg: PgCluster
) -> None:
    one, two = two_servers
    assert not (two.home / "credentials.json").exists(), "the second process made an admin too"
    admin = one.client_token(**_client(one.admin_credentials()))

    one.cli("server", "add", "--name", "src", "--host", HOST, "--port", str(shared_pg.port),
            "--region", REGION)  # fmt: skip
    one.cli("keyvault", "create", "--name", "kv1", "--region", REGION)
    secret = one.cli_json(
        "keyvault", "secret", "set", "--vault-name", "kv1", "--name", "srcpw",
        input=superuser_connstr(shared_pg, DATABASE),
    )["properties"]["secretUri"]  # fmt: skip
    vault = one.cli_json("vault", "create", "--name", VAULT, "--region", REGION)
    group = vault["id"].split("/providers/", 1)[0]
    for role in ("Reader", "Key Vault Secrets User"):
        one.grant(f"vault:{VAULT}", role, group)
    # An hourly policy whose slots are half an hour away while the instance is created ...
    later = (datetime.now(UTC) - timedelta(minutes=30)).strftime("%H:%M")
    one.cli("policy", "create", "--vault-name", VAULT, "--name", "hourly", "--schedule",
            "hourly", "--every-hours", "1", "--time", later)  # fmt: skip
    one.cli("instance", "create", "--vault-name", VAULT, "--server", "src", "--database",
            DATABASE, "--policy", "hourly", "--secret", secret, "--name", INSTANCE)  # fmt: skip

    # ... then moved so that one slot comes due a few seconds from now. The anchor stays in
    # 2021: every slot since then lies before the instance existed and must not run.
    policy_path = f"{vault['id']}/backupPolicies/hourly"
    policy = _ok(one.api("GET", policy_path, token=admin))
    slot = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
    schedule = policy["properties"]["policyRules"][0]["trigger"]["schedule"]
    [interval] = schedule["repeatingTimeIntervals"]
    assert interval.startswith("R/2021-08-15T"), interval
    assert interval.endswith("/PT1H"), interval
    schedule["repeatingTimeIntervals"] = [f"R/2021-08-15T{slot:%H:%M:%S}+00:00/PT1H"]
    _ok(one.api("PUT", policy_path, token=admin, json={"properties": policy["properties"]}))

    # The second process answers for the same metadata with its own tokens: a service
    # principal made through the first one signs in at the second.
    robot = one.cli_json("principal", "create", "--name", "robot", "--type", "service-principal")
    one.grant(robot["clientId"], "Backup Reader", vault["id"])
    robot_token = two.client_token(robot["clientId"], robot["secret"])
    jobs_path = f"{vault['id']}/backupJobs"

    deadline = time.monotonic() + 60
    while True:
        found = _ok(one.api("GET", jobs_path, token=admin))["value"]
        if found and all(j["properties"]["status"] != "InProgress" for j in found):
            break
        assert time.monotonic() < deadline, f"no scheduled backup completed: {found}"
        time.sleep(0.25)
    time.sleep(4)  # four more ticks of each scheduler: nothing else may be queued

    for server, token in ((one, admin), (two, robot_token)):
        listed = _ok(server.api("GET", jobs_path, token=token))["value"]
        assert len(listed) == 1, f"{server.url}: {[j['properties'] for j in listed]}"
        job = listed[0]["properties"]
        assert job["operation"] == "Backup"
        assert job["isUserTriggered"] is False
        assert job["status"] == "Completed", job["errorDetails"]
        assert job["extendedInfo"]["additionalDetails"]["PolicyRuleName"] == "BackupHourly"
        started = datetime.fromisoformat(job["startTime"].replace("Z", "+00:00"))
        assert started >= slot
    points_path = f"{vault['id']}/backupInstances/{INSTANCE}/recoveryPoints"
    points = _ok(two.api("GET", points_path, token=robot_token))["value"]
    assert len(points) == 1, points
    stores = points[0]["properties"]["recoveryPointDataStoresDetails"]
    assert [d["type"] for d in stores] == ["VaultStore"], stores


def _client(creds: dict[str, str]) -> dict[str, str]:
    return {"client_id": creds["clientId"], "secret": creds["clientSecret"]}
