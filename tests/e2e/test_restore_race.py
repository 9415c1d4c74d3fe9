"""Issue 8, findings 5 and 7, against a real `pgvault serve`: raced restores, spoofed Host.

Three simultaneous restore-as-files requests to one prefix: exactly one completes, the
others fail with UserErrorFileAlreadyExists, and the files equal a single restore's. A
request with `Host: evil.example` gets LRO headers built from the service's public URL.
"""

from __future__ import annotations

import json
import shlex
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.e2e.conftest import (
    API_VERSION,
    HOST,
    SOURCE_DB,
    PgvaultServer,
    superuser_connstr,
)
from tests.support.pg import PgCluster

REGION = "eastus"
VAULT = "v1"
INSTANCE = "shop1"


def _grant_fixes(srv: PgvaultServer, stderr: str) -> None:
    for line in stderr.splitlines():
        if line.startswith("fix:") and "pgvault role assignment create" in line:
            command = line[line.index("pgvault role assignment create") :].strip()
            srv.cli(*shlex.split(command)[1:])


def _files_args(point: str, container_url: str, prefix: str) -> list[str]:
    return [
        "restore", "files", "--vault-name", VAULT, "--instance", INSTANCE,
        "--recovery-point", point, "--container", container_url, "--file-prefix", prefix,
    ]  # fmt: skip


def _protect(srv: PgvaultServer, source: PgCluster) -> tuple[str, str, Path, dict[str, str]]:
    """Server, secret, vault, instance, one backup and a local container the vault may use."""
    srv.cli_json(
        "server", "add", "--name", "src", "--host", HOST, "--port", str(source.port),
        "--region", REGION,
    )  # fmt: skip
    srv.cli_json("keyvault", "create", "--name", "kv1", "--region", REGION)
    secret = srv.cli_json(
        "keyvault", "secret", "set", "--vault-name", "kv1", "--name", "srcpw",
        input=superuser_connstr(source),
    )["properties"]["secretUri"]  # fmt: skip
    vault = srv.cli_json("vault", "create", "--name", VAULT, "--region", REGION)
    srv.cli_json("policy", "create", "--vault-name", VAULT, "--name", "weekly")
    create = [
        "instance", "create", "--vault-name", VAULT, "--server", "src", "--database", SOURCE_DB,
        "--policy", "weekly", "--secret", secret, "--name", INSTANCE,
    ]  # fmt: skip
    _grant_fixes(srv, srv.cli(*create, check=False).stderr)
    srv.cli_json(*create)
    job = srv.cli_json("backup", "now", "--vault-name", VAULT, "--instance", INSTANCE, "--wait")
    assert job["properties"]["status"] == "Completed", job["properties"]["errorDetails"]
    point = srv.cli_json("recovery-point", "list", "--vault-name", VAULT, "--instance", INSTANCE)[
        "value"
    ][0]["name"]
    files_dir = srv.home.parent / "storage-race"
    files_dir.mkdir()
    srv.cli_json(
        "storage-account", "create", "--name", "sa1", "--region", REGION, "--kind", "local",
        "--path", str(files_dir),
    )  # fmt: skip
    container = srv.cli_json(
        "storage-account", "container", "create", "--account-name", "sa1", "--name", "dumps"
    )
    srv.grant(f"vault:{VAULT}", "Storage Blob Data Contributor", container["id"])
    return point, container["properties"]["url"], files_dir / "dumps", vault


def test_raced_restores_to_one_prefix_one_wins_and_spoofed_host_is_ignored(
    pgvault_server: PgvaultServer, source_pg: PgCluster
) -> None:
    srv = pgvault_server
    point, container_url, written, vault = _protect(srv, source_pg)

    # Finding 5: a spoofed Host header does not flow into the LRO headers.
    token = srv.token()
    bi = f"{vault['id']}/backupInstances/{INSTANCE}"
    resp = httpx.post(
        f"{srv.url}{bi}/validateRestore?api-version={API_VERSION}",
        headers={"Authorization": f"Bearer {token}", "Host": "evil.example"},
        json={
            "restoreRequestObject": {
                "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
                "sourceDataStoreType": "VaultStore",
                "recoveryPointId": point,
                "restoreTargetInfo": {
                    "objectType": "RestoreFilesTargetInfo",
                    "recoveryOption": "FailIfExists",
                    "restoreLocation": REGION,
                    "targetDetails": {
                        "url": container_url,
                        "filePrefix": "probe",
                        "restoreTargetLocationType": "AzureBlobs",
                    },
                },
            }
        },
        timeout=60,
    )
    assert resp.status_code == 202, resp.text
    for header in ("Azure-AsyncOperation", "Location"):
        assert resp.headers[header].startswith(srv.url + vault["id"] + "/"), resp.headers[header]
        assert "evil.example" not in resp.headers[header]

    # Finding 7: three simultaneous restores to one prefix.
    def restore(_: int) -> tuple[int, str]:
        done = srv.cli(*_files_args(point, container_url, "race/one"), "--wait", check=False)
        return done.returncode, done.stdout + done.stderr

    with ThreadPoolExecutor(max_workers=3) as pool:
        outcomes = list(pool.map(restore, range(3)))
    codes = sorted(rc for rc, _ in outcomes)
    assert codes == [0, 1, 1], outcomes
    for rc, text in outcomes:
        if rc:
            assert "UserErrorFileAlreadyExists" in text, text
            assert "Traceback" not in text

    single = srv.cli_json(*_files_args(point, container_url, "single/one"), "--wait")
    assert single["properties"]["status"] == "Completed", single["properties"]["errorDetails"]
    raced = _files(written / "race")
    assert {"one/toc.dat", "one.manifest.json"} <= set(raced)
    assert not [name for name in raced if name.endswith(".partial")]
    assert _files(written / "race") == raced
    for name in raced:
        assert (written / "race" / name).read_bytes() == (written / "single" / name).read_bytes()
    assert json.loads((written / "race" / "one.manifest.json").read_text())["dbName"] == SOURCE_DB

    # A fourth restore to the finished prefix is refused too, and leaves the files alone.
    again = srv.cli(*_files_args(point, container_url, "race/one"), "--wait", check=False)
    assert again.returncode == 1
    assert "UserErrorFileAlreadyExists" in again.stderr
    assert _files(written / "race") == raced
    for name in raced:
        assert (written / "race" / name).read_bytes() == (written / "single" / name).read_bytes()


def _files(root: Path) -> list[str]:
    """Every file under `root`, relative (a restore writes a directory archive + manifest)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
