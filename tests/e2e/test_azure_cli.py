"""The official Azure CLI, unchanged, against `pgvault serve` over https: the seed's flow.

`azure-cli` and Microsoft's `dataprotection` extension (the vendored wheel) are installed
once into a cached virtual environment under `.cache/azcli/` (keyed by both versions; a cold
install takes about a minute). Every `az` process gets its own AZURE_CONFIG_DIR and HOME in
a temporary directory, REQUESTS_CA_BUNDLE for the self-signed certificate and, because key
vaults are hosts (`https://KV.vault.pgvault.test:PORT/`, as the Key Vault SDK requires) and
a test machine has no wildcard DNS, HTTPS_PROXY pointing at a CONNECT proxy that relays only
those names to the server (TLS stays end to end). Nothing else is configured in az.

One server, one source cluster; the tests run in order and share the state they build. Each
`az` start costs about two seconds on two cores, so the flow keeps to the commands the seed
needs; `update-msi-permissions` waits 60 s by itself after granting roles (az's own sleep).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    RESTORER,
    SOURCE_DB,
    PgvaultServer,
    restorer_connstr,
    superuser_connstr,
)
from tests.support.connect_proxy import connect_proxy
from tests.support.pg import PgCluster, free_port
from tests.support.sampledb import assert_same_data, snapshot
from tests.support.tls import make_self_signed

AZ_VERSION = "2.91.0"
EXTENSION = "dataprotection-1.7.0-py3-none-any.whl"
SUFFIX = "vault.pgvault.test"
RG = "default"
REGION = "eastus"
VAULT = "azvault"
POLICY = "weekly"
PG = "Microsoft.DBforPostgreSQL/servers"
DS = "AzureDatabaseForPostgreSQL"
REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "azcli"


def _wheel() -> Path | None:
    """The extension wheel: PGVAULT_AZ_EXTENSION_WHEEL, else the copy in tests/vendor."""
    named = os.environ.get("PGVAULT_AZ_EXTENSION_WHEEL")
    candidates = [Path(named)] if named else []
    candidates.append(REPO / "tests" / "vendor" / EXTENSION)
    return next((c for c in candidates if c.is_file()), None)


@dataclass(frozen=True)
class AzInstall:
    python: Path
    extensions: Path


def _install(wheel: Path) -> AzInstall:
    """The cached venv with azure-cli and the extension: built once, reused when complete."""
    key = f"az-{AZ_VERSION}-{wheel.stem.split('-py3')[0]}"
    venv, extensions = CACHE / f"venv-{key}", CACHE / f"ext-{key}"
    done = CACHE / f"{key}.complete"
    python = venv / "bin" / "python"
    if done.is_file():
        return AzInstall(python, extensions)
    CACHE.mkdir(parents=True, exist_ok=True)
    for partial in (venv, extensions):  # an interrupted install of this key: start over
        shutil.rmtree(partial, ignore_errors=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"azure-cli=={AZ_VERSION}"], check=True
    )
    env = {
        **_base_env(Path(tempfile.mkdtemp(prefix="az-install-"))),
        "AZURE_EXTENSION_DIR": str(extensions),
    }
    subprocess.run(
        [str(python), "-m", "azure.cli", "extension", "add", "--source", str(wheel), "-y"],
        check=True,
        env=env,
        capture_output=True,
    )
    done.write_text(f"cold install: {time.monotonic() - started:.0f} s\n")
    return AzInstall(python, extensions)


def _base_env(home: Path) -> dict[str, str]:
    """No state of the user's or the machine's: a fresh HOME and config dir."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "AZURE_CONFIG_DIR": str(home / ".azure"),
        "AZURE_CORE_COLLECT_TELEMETRY": "false",
        "AZURE_CORE_NO_COLOR": "true",
        "AZURE_CORE_SURVEY_MESSAGE": "false",
        "AZURE_CORE_LOGIN_EXPERIENCE_V2": "off",
    }


@dataclass
class Az:
    """`az` as one signed-in identity (its own config dir), against the test server."""

    install: AzInstall
    home: Path
    ca_bundle: Path
    proxy: str
    calls: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {
            **_base_env(self.home),
            "AZURE_EXTENSION_DIR": str(self.install.extensions),
            "REQUESTS_CA_BUNDLE": str(self.ca_bundle),
            "HTTPS_PROXY": self.proxy,
            "NO_PROXY": "127.0.0.1,localhost",
        }

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        self.calls.append(" ".join(args[:3]))
        proc = subprocess.run(
            [str(self.install.python), "-m", "azure.cli", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"az {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def json(self, *args: str) -> Any:
        out = self.run(*args, "--output", "json").stdout
        return json.loads(out) if out.strip() else None

    def fails(self, *args: str) -> str:
        proc = self.run(*args, check=False)
        assert proc.returncode != 0, f"az {' '.join(args)} succeeded:\n{proc.stdout}"
        return proc.stderr


@dataclass
class World:
    server: PgvaultServer
    source: PgCluster
    admin: Az
    user: Az
    reader: Az
    sub: str = ""
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def rg(self) -> str:
        return f"/subscriptions/{self.sub}/resourceGroups/{RG}"

    @property
    def vault_id(self) -> str:
        return f"{self.rg}/providers/Microsoft.DataProtection/backupVaults/{VAULT}"

    def rest_put(self, path: str, body: dict[str, Any], version: str = "2023-07-01") -> Any:
        """A resource Azure keeps outside Data Protection, made with `az rest`."""
        url = f"{self.server.url}{path}?api-version={version}"
        return self.admin.json("rest", "--method", "put", "--url", url, "--body", json.dumps(body))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, source_pg: PgCluster) -> Iterator[World]:
    wheel = _wheel()
    if wheel is None:
        pytest.fail(f"{EXTENSION} not found in tests/vendor (or PGVAULT_AZ_EXTENSION_WHEEL)")
    install = _install(wheel)
    base = tmp_path_factory.mktemp("azcli")
    tls = make_self_signed(base / "tls", extra_dns=(f"*.{SUFFIX}",))
    home = base / "pgvault-home"
    home.mkdir()
    server = PgvaultServer(home, free_port(), base / "serve.log", tls)
    server.env["PGVAULT_KEYVAULT_DNS_SUFFIX"] = SUFFIX
    server.start()
    try:
        with connect_proxy(SUFFIX, server.port) as proxy:
            who = {n: Az(install, base / n, tls.cert, proxy) for n in ("admin", "user", "reader")}
            yield World(server, source_pg, who["admin"], who["user"], who["reader"])
    finally:
        server.stop()
        print(f"\naz invocations: {sum(len(a.calls) for a in who.values())}")


def _sign_in_cloud(az: Az, url: str) -> None:
    az.run("cloud", "register", "-n", "pgvault", "--endpoint-resource-manager", url)
    az.run("cloud", "set", "-n", "pgvault")


# -- 1. sign-in ------------------------------------------------------------------------------


def test_sign_in_as_service_principal_and_as_user(world: World) -> None:
    creds = world.server.admin_credentials()
    _sign_in_cloud(world.admin, world.server.url)
    accounts = world.admin.json(
        "login", "--service-principal", "-u", creds["clientId"], "-p", creds["clientSecret"],
        "--tenant", "pgvault",
    )  # fmt: skip
    assert len(accounts) == 1
    world.sub = accounts[0]["id"]
    tenant = accounts[0]["tenantId"]
    assert accounts[0]["user"] == {"name": creds["clientId"], "type": "servicePrincipal"}

    user = world.server.cli_json("principal", "create", "--name", "alice", "--type", "user")
    world.server.grant("alice", "Backup Contributor", world.rg)
    _sign_in_cloud(world.user, world.server.url)
    signed = world.user.json("login", "-u", "alice", "-p", user["secret"], "--tenant", tenant)
    assert signed[0]["user"] == {"name": "alice", "type": "user"}
    token = world.user.json("account", "get-access-token")
    assert token["tenant"] == tenant
    # an ordinary pgvault token: revoked like any other
    listed = world.server.api("GET", "/subscriptions", token=token["accessToken"])
    assert listed.status_code == 200
    assert listed.json()["value"][0]["tenantId"] == tenant


# -- 2. protect ------------------------------------------------------------------------------


def test_protect_a_database(world: World, tmp_path_factory: pytest.TempPathFactory) -> None:
    w, az = world, world.admin
    server_id = f"{w.rg}/providers/{PG}/src"
    w.rest_put(
        server_id,
        {"location": REGION, "properties": {"fullyQualifiedDomainName": "127.0.0.1",
                                            "port": w.source.port}},
        "2017-12-01",
    )  # fmt: skip
    kv_id = f"{w.rg}/providers/Microsoft.KeyVault/vaults/azkv"
    kv = w.rest_put(kv_id, {"location": REGION})
    assert kv["properties"]["vaultUri"] == f"https://azkv.{SUFFIX}:{w.server.port}/"
    source = w.rest_put(
        f"{kv_id}/secrets/src", {"properties": {"value": superuser_connstr(w.source)}}
    )["properties"]["secretUri"]
    restorer = w.rest_put(
        f"{kv_id}/secrets/restorer", {"properties": {"value": restorer_connstr(w.source)}}
    )["properties"]["secretUri"]
    w.state.update(server_id=server_id, kv_id=kv_id, restorer_secret=restorer)

    vault = az.json(
        "dataprotection", "backup-vault", "create", "-g", RG, "--vault-name", VAULT,
        "--location", REGION, "--type", "SystemAssigned",
        "--storage-settings", "datastore-type=VaultStore", "type=LocallyRedundant",
    )  # fmt: skip
    w.state["identity"] = vault["identity"]["principalId"]
    files = tmp_path_factory.mktemp("az-files")
    template = files / "policy.json"
    template.write_text(
        az.run(
            "dataprotection",
            "backup-policy",
            "get-default-policy-template",
            "--datasource-type",
            DS,
        ).stdout
    )
    az.run(
        "dataprotection", "backup-policy", "create", "-g", RG, "--vault-name", VAULT,
        "-n", POLICY, "--policy", str(template),
    )  # fmt: skip
    bi = files / "instance.json"
    bi.write_text(
        az.run(
            "dataprotection",
            "backup-instance",
            "initialize",
            "--datasource-type",
            DS,
            "-l",
            REGION,
            "--policy-id",
            f"{w.vault_id}/backupPolicies/{POLICY}",
            "--datasource-id",
            f"{server_id}/databases/{SOURCE_DB}",
            "--secret-store-type",
            "AzureKeyVault",
            "--secret-store-uri",
            source,
        ).stdout
    )
    w.state["instance"] = json.loads(bi.read_text())["backup_instance_name"]
    w.state["files"] = files

    # without the vault identity's roles, validation names what is missing
    refused = az.fails(
        "dataprotection", "backup-instance", "validate-for-backup", "-g", RG,
        "--vault-name", VAULT, "--backup-instance", str(bi),
    )  # fmt: skip
    assert "UserError" in refused, refused
    # Listing a key vault's secrets is a data action: an Owner alone may not (as in Azure).
    w.server.grant("admin", "Key Vault Secrets User", kv_id)
    granted = az.json(
        "dataprotection", "backup-instance", "update-msi-permissions", "-g", RG,
        "--vault-name", VAULT, "--datasource-type", DS, "--operation", "Backup",
        "--permissions-scope", "Resource", "--backup-instance", str(bi),
        "--keyvault-id", kv_id, "--yes",
    )  # fmt: skip
    scopes = {g["Properties"]["scope"].lower() for g in granted}
    assert {kv_id.lower(), server_id.lower()} <= scopes
    roles = az.json("role", "assignment", "list", "--assignee", w.state["identity"], "--all")
    assert {r["principalType"] for r in roles} == {"ServicePrincipal"}
    az.run(
        "dataprotection", "backup-instance", "validate-for-backup", "-g", RG,
        "--vault-name", VAULT, "--backup-instance", str(bi),
    )  # fmt: skip
    created = az.json(
        "dataprotection", "backup-instance", "create", "-g", RG, "--vault-name", VAULT,
        "--backup-instance", str(bi),
    )  # fmt: skip
    assert created["properties"]["currentProtectionState"] == "ProtectionConfigured"
    assert created["properties"]["friendlyName"] == f"src/{SOURCE_DB}"  # as az sent it


# -- 3. back up ------------------------------------------------------------------------------


def test_adhoc_backup_and_recovery_points(world: World) -> None:
    w, az = world, world.user  # a user with Backup Contributor
    done = az.json(
        "dataprotection", "backup-instance", "adhoc-backup", "-g", RG, "--vault-name", VAULT,
        "-n", w.state["instance"], "--rule-name", "BackupWeekly",
        "--retention-tag-override", "Default",
    )  # fmt: skip
    job = az.json(
        "dataprotection", "job", "show", "-g", RG, "--vault-name", VAULT,
        "--job-id", done["jobId"].rsplit("/", 1)[-1],
    )  # fmt: skip
    assert job["properties"]["status"] == "Completed", job["properties"]["errorDetails"]
    points = az.json(
        "dataprotection", "recovery-point", "list", "-g", RG, "--vault-name", VAULT,
        "--backup-instance-name", w.state["instance"],
    )  # fmt: skip
    assert len(points) == 1
    w.state["point"] = points[0]["name"]
    w.state["backup_job"] = job["name"]


# -- 4. restore ------------------------------------------------------------------------------


def _restore_request(w: World, database: str, name: str) -> Path:
    path = w.state["files"] / name
    path.write_text(
        w.admin.run(
            "dataprotection",
            "backup-instance",
            "restore",
            "initialize-for-data-recovery",
            "--datasource-type",
            DS,
            "--restore-location",
            REGION,
            "--source-datastore",
            "VaultStore",
            "--recovery-point-id",
            w.state["point"],
            "--target-resource-id",
            f"{w.state['server_id']}/databases/{database}",
            "--secret-store-type",
            "AzureKeyVault",
            "--secret-store-uri",
            w.state["restorer_secret"],
        ).stdout
    )
    return path


def test_restore_as_database(world: World) -> None:
    w, az = world, world.admin
    request = _restore_request(w, "shop_az", "restore-db.json")
    common = ("-g", RG, "--vault-name", VAULT, "-n", w.state["instance"])
    az.run("dataprotection", "backup-instance", "validate-for-restore", *common,
           "--restore-request-object", str(request))  # fmt: skip
    done = az.json("dataprotection", "backup-instance", "restore", "trigger", *common,
                   "--restore-request-object", str(request))  # fmt: skip
    job = az.json("dataprotection", "job", "show", "-g", RG, "--vault-name", VAULT,
                  "--job-id", done["jobId"].rsplit("/", 1)[-1])  # fmt: skip
    assert job["properties"]["status"] == "Completed", job["properties"]["errorDetails"]
    assert_same_data(
        snapshot(w.source.admin_dsn(SOURCE_DB)), snapshot(w.source.admin_dsn("shop_az"))
    )
    owners = w.source.query(
        "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname NOT IN "
        "('pg_catalog', 'information_schema')",
        dbname="shop_az",
    )
    assert owners == [(RESTORER,)]


def test_restore_into_an_existing_database_is_refused(world: World) -> None:
    request = _restore_request(world, "shop_az", "restore-existing.json")
    refused = world.admin.fails(
        "dataprotection", "backup-instance", "validate-for-restore", "-g", RG,
        "--vault-name", VAULT, "-n", world.state["instance"],
        "--restore-request-object", str(request),
    )  # fmt: skip
    assert "UserErrorDatabaseNameAlreadyInUse" in refused, refused


def test_restore_as_files(world: World) -> None:
    w, az = world, world.admin
    account = f"{w.rg}/providers/Microsoft.Storage/storageAccounts/azsa"
    target = w.server.home.parent / "storage-azsa"
    w.rest_put(
        account,
        {"location": REGION, "properties": {"backend": {"type": "local", "path": str(target)}}},
    )
    container = w.rest_put(f"{account}/blobServices/default/containers/dumps", {})
    az.run(
        "role", "assignment", "create", "--assignee-object-id", w.state["identity"],
        "--assignee-principal-type", "ServicePrincipal",
        "--role", "Storage Blob Data Contributor", "--scope", container["id"],
    )  # fmt: skip
    request = w.state["files"] / "restore-files.json"
    request.write_text(
        az.run(
            "dataprotection",
            "backup-instance",
            "restore",
            "initialize-for-data-recovery-as-files",
            "--datasource-type",
            DS,
            "--restore-location",
            REGION,
            "--source-datastore",
            "VaultStore",
            "--recovery-point-id",
            w.state["point"],
            "--target-blob-container-url",
            container["properties"]["url"],
            "--target-file-name",
            "az-shop",
        ).stdout
    )
    done = az.json(
        "dataprotection", "backup-instance", "restore", "trigger", "-g", RG,
        "--vault-name", VAULT, "-n", w.state["instance"], "--restore-request-object", str(request),
    )  # fmt: skip
    job = az.json("dataprotection", "job", "show", "-g", RG, "--vault-name", VAULT,
                  "--job-id", done["jobId"].rsplit("/", 1)[-1])  # fmt: skip
    assert job["properties"]["status"] == "Completed", job["properties"]["errorDetails"]
    written = sorted(p.name for p in (target / "dumps").rglob("*") if p.is_file())
    assert any(name.startswith("az-shop") for name in written), written


# -- 5. suspend, resume; lists across vaults ---------------------------------------------------


def test_suspend_then_resume_protection(world: World) -> None:
    az = world.user
    common = ("-g", RG, "--vault-name", VAULT, "-n", world.state["instance"])
    az.run("dataprotection", "backup-instance", "suspend-backup", *common)
    az.run("dataprotection", "backup-instance", "resume-protection", *common)
    shown = az.json("dataprotection", "backup-instance", "show", *common)
    assert shown["properties"]["currentProtectionState"] == "ProtectionConfigured"


def test_resource_graph_lists_instances_and_jobs(world: World) -> None:
    az = world.user
    instances = az.json(
        "dataprotection", "backup-instance", "list-from-resourcegraph",
        "--datasource-type", DS, "--vaults", VAULT,
    )  # fmt: skip
    assert [i["name"] for i in instances] == [world.state["instance"]]
    assert instances[0]["protectionState"] == "ProtectionConfigured"
    jobs = az.json(
        "dataprotection", "job", "list-from-resourcegraph", "--datasource-type", DS,
        "--vaults", VAULT, "--operation", "OnDemandBackup",
    )  # fmt: skip
    assert [j["name"] for j in jobs] == [world.state["backup_job"]]
    listed = az.json("dataprotection", "job", "list", "-g", RG, "--vault-name", VAULT)
    assert {j["properties"]["operation"] for j in listed} == {"Backup", "Restore"}


def test_backup_reader_can_look_but_not_act(world: World) -> None:
    created = world.server.cli_json(
        "principal", "create", "--name", "az-reader", "--type", "service-principal"
    )
    world.admin.run(
        "role", "assignment", "create", "--assignee-object-id", created["principalId"],
        "--assignee-principal-type", "ServicePrincipal", "--role", "Backup Reader",
        "--scope", world.rg,
    )  # fmt: skip
    az = world.reader
    _sign_in_cloud(az, world.server.url)
    az.run("login", "--service-principal", "-u", created["clientId"], "-p", created["secret"],
           "--tenant", "pgvault")  # fmt: skip
    shown = az.json("dataprotection", "backup-instance", "list", "-g", RG, "--vault-name", VAULT)
    assert [i["name"] for i in shown] == [world.state["instance"]]
    refused = az.fails(
        "dataprotection", "backup-instance", "adhoc-backup", "-g", RG, "--vault-name", VAULT,
        "-n", world.state["instance"], "--rule-name", "BackupWeekly",
    )  # fmt: skip
    assert "AuthorizationFailed" in refused, refused
