"""The whole CLI flow through real `pgvault` processes against a live `pgvault serve`.

One server and one source cluster serve the module: the module fixture registers
the server, key vault, secrets, vault, policy, storage account and container,
protects `shop` and takes one backup, all through the CLI with `--output json`.
Each test then restores or probes from that recovery point.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    HOST,
    PGVAULT_BIN,
    RESTORER,
    RESTORER_PASSWORD,
    SOURCE_DB,
    PgvaultServer,
    pg_bindir,
    restorer_connstr,
    superuser_connstr,
)
from tests.support.pg import PgCluster
from tests.support.sampledb import assert_same_data, assert_same_permissions, snapshot

REGION = "eastus"
VAULT = "v1"
INSTANCE = "shop1"


@dataclass
class Protected:
    """What the module fixture set up."""

    server: PgvaultServer
    source: PgCluster
    source_secret: str
    restorer_secret: str
    container_url: str
    files_dir: Path
    point: str
    backup_job: str


def _fix_commands(stderr: str) -> list[str]:
    """The `pgvault role assignment create ...` commands the `fix:` lines recommend."""
    fixes = [line for line in stderr.splitlines() if line.startswith("fix:")]
    assert fixes, stderr
    commands = []
    for line in fixes:
        assert "pgvault role assignment create" in line, line
        commands.append(line[line.index("pgvault role assignment create") :].strip())
    return commands


def _grant_command(assignee: str, role: str, scope: str) -> str:
    return f'pgvault role assignment create --assignee {assignee} --role "{role}" --scope {scope}'


@pytest.fixture(scope="module")
def protected(pgvault_module_server: PgvaultServer, source_pg: PgCluster) -> Protected:
    srv = pgvault_module_server
    server = srv.cli_json(
        "server", "add", "--name", "src", "--host", HOST, "--port", str(source_pg.port),
        "--region", REGION,
    )  # fmt: skip
    assert server["name"] == "src"
    assert server["properties"]["port"] == source_pg.port
    kv = srv.cli_json("keyvault", "create", "--name", "kv1", "--region", REGION)
    assert kv["name"] == "kv1"
    src_secret = srv.cli_json(
        "keyvault", "secret", "set", "--vault-name", "kv1", "--name", "srcpw",
        input=superuser_connstr(source_pg),
    )["properties"]["secretUri"]  # fmt: skip
    rst_secret = srv.cli_json(
        "keyvault", "secret", "set", "--vault-name", "kv1", "--name", "restorer",
        input=restorer_connstr(source_pg) + "\n",
    )["properties"]["secretUri"]  # fmt: skip
    vault = srv.cli_json("vault", "create", "--name", VAULT, "--region", REGION)
    assert vault["name"] == VAULT
    identity = vault["identity"]["principalId"]
    assert identity
    policy = srv.cli_json("policy", "create", "--vault-name", VAULT, "--name", "weekly")
    assert policy["name"] == "weekly"
    create_instance = [
        "instance", "create", "--vault-name", VAULT, "--server", "src", "--database", SOURCE_DB,
        "--policy", "weekly", "--secret", src_secret, "--name", INSTANCE,
    ]  # fmt: skip

    # The vault's identity holds nothing yet: protection fails, listing every missing grant
    # with the command that fixes it.
    denied = srv.cli(*create_instance, check=False)
    assert denied.returncode == 1, denied
    assert "UserErrorMSIMissingPermissions" in denied.stderr
    assert "UserErrorMissingPermissionsOnSecretStore" in denied.stderr
    assert "Traceback" not in denied.stderr
    fixes = _fix_commands(denied.stderr)
    assert sorted(fixes) == sorted(
        [
            _grant_command(identity, "Reader", server["id"]),
            _grant_command(identity, "Key Vault Secrets User", kv["id"]),
        ]
    ), denied.stderr
    assert srv.cli_json("instance", "list", "--vault-name", VAULT)["value"] == []

    # Run exactly what was recommended: Reader on the server, Key Vault Secrets User on the
    # key vault -- nothing broader.
    for command in fixes:
        srv.cli(*shlex.split(command)[1:])
    instance = srv.cli_json(*create_instance)
    assert instance["name"] == INSTANCE
    assert instance["properties"]["dataSourceInfo"]["resourceName"] == SOURCE_DB

    job = srv.cli_json("backup", "now", "--vault-name", VAULT, "--instance", INSTANCE, "--wait")
    assert job["properties"]["status"] == "Completed", job["properties"]["errorDetails"]
    assert job["properties"]["operation"] == "Backup"
    points = srv.cli_json("recovery-point", "list", "--vault-name", VAULT, "--instance", INSTANCE)
    assert len(points["value"]) == 1
    point = points["value"][0]["name"]

    files_dir = srv.home.parent / "storage-sa1"
    files_dir.mkdir()
    account = srv.cli_json(
        "storage-account", "create", "--name", "sa1", "--region", REGION, "--kind", "local",
        "--path", str(files_dir),
    )  # fmt: skip
    assert account["properties"]["backend"]["type"] == "local"
    container = srv.cli_json(
        "storage-account", "container", "create", "--account-name", "sa1", "--name", "dumps"
    )
    container_url = container["properties"]["url"]

    # Restore as files needs Storage Blob Data Contributor on the container.
    no_blob = srv.cli(
        *_restore_files_args(point, container_url, "probe"), "--validate-only", check=False
    )
    assert no_blob.returncode == 1, no_blob
    assert "UserErrorContainerNotAccessible" in no_blob.stderr
    assert _fix_commands(no_blob.stderr) == [
        _grant_command(identity, "Storage Blob Data Contributor", container["id"])
    ], no_blob.stderr
    granted = srv.grant(f"vault:{VAULT}", "Storage Blob Data Contributor", container["id"])
    assert granted["properties"]["principalId"] == identity
    assert granted["properties"]["scope"] == container["id"]
    ok = srv.cli(*_restore_files_args(point, container_url, "probe"), "--validate-only")
    assert "Validation passed" in ok.stdout

    held = srv.cli_json("role", "assignment", "list", "--assignee", f"vault:{VAULT}")["value"]
    assert sorted(
        (a["properties"]["roleDefinitionName"], a["properties"]["scope"]) for a in held
    ) == sorted(
        [
            ("Reader", server["id"]),
            ("Key Vault Secrets User", kv["id"]),
            ("Storage Blob Data Contributor", container["id"]),
        ]
    )
    return Protected(
        srv, source_pg, src_secret, rst_secret, container_url, files_dir, point, job["name"]
    )


def _restore_db_args(p: Protected, database: str) -> list[str]:
    return [
        "restore", "database", "--vault-name", VAULT, "--instance", INSTANCE,
        "--recovery-point", p.point, "--target-server", "src", "--target-database", database,
        "--secret", p.restorer_secret,
    ]  # fmt: skip


def _restore_files_args(point: str, container_url: str, prefix: str) -> list[str]:
    return [
        "restore", "files", "--vault-name", VAULT, "--instance", INSTANCE,
        "--recovery-point", point, "--container", container_url, "--file-prefix", prefix,
    ]  # fmt: skip


def test_restore_as_database_as_non_superuser(protected: Protected) -> None:
    p = protected
    job = p.server.cli_json(*_restore_db_args(p, "shop_restored"), "--wait")
    assert job["properties"]["status"] == "Completed", job["properties"]["errorDetails"]
    assert job["properties"]["operation"] == "Restore"

    assert_same_data(
        snapshot(p.source.admin_dsn(SOURCE_DB)), snapshot(p.source.admin_dsn("shop_restored"))
    )
    owners = p.source.query(
        "SELECT DISTINCT tableowner FROM pg_tables"
        " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
        dbname="shop_restored",
    )
    assert owners == [(RESTORER,)]
    (db_owner,) = p.source.query(
        "SELECT datdba::regrole::text FROM pg_database WHERE datname = 'shop_restored'"
    )[0]
    assert db_owner == RESTORER


def test_restore_as_files_then_plain_pg_restore(protected: Protected, target_pg: PgCluster) -> None:
    p = protected
    job = p.server.cli_json(*_restore_files_args(p.point, p.container_url, "shop/2026"), "--wait")
    assert job["properties"]["status"] == "Completed", job["properties"]["errorDetails"]

    written = p.files_dir / "dumps" / "shop"
    assert sorted(f.name for f in written.iterdir()) == ["2026", "2026.manifest.json"]
    assert (written / "2026" / "toc.dat").is_file()
    manifest = json.loads((written / "2026.manifest.json").read_text())
    assert manifest["dbName"] == SOURCE_DB

    target_pg.create_database("shop_copy")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = target_pg.superuser_password
    restored = subprocess.run(
        [
            str(pg_bindir() / "pg_restore"), "-h", HOST, "-p", str(target_pg.port),
            "-U", "postgres", "-d", "shop_copy", "--exit-on-error", "-Fd", "-j", "2",
            str(written / "2026"),
        ],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr

    source = snapshot(p.source.admin_dsn(SOURCE_DB))
    copy = snapshot(target_pg.admin_dsn("shop_copy"))
    assert_same_data(source, copy)
    assert_same_permissions(source, copy)


def test_restore_into_existing_database_fails(protected: Protected) -> None:
    p = protected
    p.source.create_database("already_here")
    result = p.server.cli(*_restore_db_args(p, "already_here"), "--wait", check=False)
    assert result.returncode == 1, result
    assert "UserErrorDatabaseNameAlreadyInUse" in result.stderr
    fix_lines = [line for line in result.stderr.splitlines() if line.startswith("fix:")]
    assert fix_lines, result.stderr
    assert "Traceback" not in result.stderr

    # Same check with --output json: still exit 1 and the error on stderr, nothing on stdout.
    result = p.server.cli(
        *_restore_db_args(p, "already_here"), "--validate-only", "--output", "json", check=False
    )
    assert result.returncode == 1
    assert "UserErrorDatabaseNameAlreadyInUse" in result.stderr
    assert result.stdout.strip() == ""
    # Nothing was restored into it.
    assert p.source.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'app'",
                          dbname="already_here") == [(0,)]  # fmt: skip


@pytest.mark.parametrize("prefix", ["../escape", "shop/../../escape", "/abs/path"])
def test_file_prefix_outside_container_is_refused(protected: Protected, prefix: str) -> None:
    p = protected
    before = sorted(str(f) for f in p.files_dir.parent.rglob("*"))
    result = p.server.cli(
        *_restore_files_args(p.point, p.container_url, prefix), "--wait", check=False
    )
    assert result.returncode == 1, result
    assert "UserErrorInvalidFilePrefix" in result.stderr
    assert "Invalid file prefix" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(str(f) for f in p.files_dir.parent.rglob("*")) == before


def test_secret_set_never_echoes_the_value(protected: Protected) -> None:
    p = protected
    value = "Server=127.0.0.1;User Id=someone;Password=never-Echo-Me-42;"
    table = p.server.cli("keyvault", "secret", "set", "--vault-name", "kv1", "--name", "quiet",
                         input=value)  # fmt: skip
    assert "never-Echo-Me-42" not in table.stdout + table.stderr
    assert "/keyvaults/kv1/secrets/quiet" in table.stdout
    as_json = p.server.cli("keyvault", "secret", "set", "--vault-name", "kv1", "--name", "quiet",
                           "--output", "json", input=value)  # fmt: skip
    assert "never-Echo-Me-42" not in as_json.stdout + as_json.stderr
    body = json.loads(as_json.stdout)
    assert "value" not in body["properties"]
    assert body["properties"]["secretUriWithVersion"].startswith(body["properties"]["secretUri"])
    listed = p.server.cli("keyvault", "secret", "list", "--vault-name", "kv1", "--output", "json")
    assert "never-Echo-Me-42" not in listed.stdout
    assert {s["name"] for s in json.loads(listed.stdout)["value"]} >= {"srcpw", "restorer", "quiet"}

    # An empty value is refused without a traceback.
    empty = p.server.cli("keyvault", "secret", "set", "--vault-name", "kv1", "--name", "empty",
                         input="", check=False)  # fmt: skip
    assert empty.returncode != 0
    assert "empty" in empty.stderr
    assert "Traceback" not in empty.stderr


def test_job_show_and_watch(protected: Protected) -> None:
    p = protected
    job_id = p.backup_job
    shown = p.server.cli_json("job", "show", job_id, "--vault-name", VAULT)
    assert shown["name"] == job_id
    assert shown["properties"]["status"] == "Completed"
    assert shown["properties"]["progress"]["bytesDone"] > 0
    by_arm_id = p.server.cli_json("job", "show", shown["id"], "--vault-name", VAULT)
    assert by_arm_id["name"] == job_id

    table = p.server.cli("job", "show", job_id, "--vault-name", VAULT)
    assert job_id in table.stdout
    assert "Completed" in table.stdout

    watched = p.server.cli_json("job", "watch", job_id, "--vault-name", VAULT)
    assert watched["name"] == job_id
    assert watched["properties"]["status"] == "Completed"

    missing = p.server.cli("job", "show", "no-such-job", "--vault-name", VAULT, check=False)
    assert missing.returncode == 1
    assert "error" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_every_listing_supports_json_output(protected: Protected) -> None:
    p = protected
    cmds: list[tuple[list[str], str | None]] = [
        (["server", "list"], "src"),
        (["server", "show", "--name", "src"], None),
        (["keyvault", "list"], "kv1"),
        (["keyvault", "secret", "list", "--vault-name", "kv1"], "srcpw"),
        (["storage-account", "list"], "sa1"),
        (["storage-account", "container", "list", "--account-name", "sa1"], "dumps"),
        (["vault", "list"], VAULT),
        (["vault", "show", "--name", VAULT], None),
        (["policy", "list", "--vault-name", VAULT], "weekly"),
        (["instance", "list", "--vault-name", VAULT], INSTANCE),
        (["instance", "show", "--vault-name", VAULT, "--name", INSTANCE], None),
        (["recovery-point", "list", "--vault-name", VAULT, "--instance", INSTANCE], p.point),
        (["job", "list", "--vault-name", VAULT], p.backup_job),
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:  # independent read-only calls
        results = list(pool.map(lambda cmd: p.server.cli_json(*cmd[0]), cmds))
    for (args, expected_name), data in zip(cmds, results, strict=True):
        if expected_name is None:
            assert isinstance(data, dict)
            assert data["id"].startswith("/subscriptions/"), (args, data)
        else:
            names = [item["name"] for item in data["value"]]
            assert expected_name in names, (args, names)
    token = p.server.token()
    assert token
    assert " " not in token


def test_passwords_never_in_cli_output_or_server_log(protected: Protected) -> None:
    """Runs last in this module, so it covers every CLI call the module made."""
    p = protected
    p.server.cli("keyvault", "secret", "set", "--vault-name", "kv1", "--name", "srcpw",
                 input=superuser_connstr(p.source))  # fmt: skip
    p.server.cli("instance", "show", "--vault-name", VAULT, "--name", INSTANCE, "-o", "json")
    assert len(p.server.cli_outputs) > 20
    for password in (p.source.superuser_password, RESTORER_PASSWORD):
        for output in p.server.cli_outputs:
            assert password not in output
        assert password not in p.server.log()


def _az_restore_request(p: Protected, server_id: str, database: str) -> dict[str, object]:
    """What `az dataprotection backup-instance restore initialize-for-data-recovery` writes
    (snake_case keys, as az prints them)."""
    db_type = "Microsoft.DBforPostgreSQL/servers/databases"
    return {
        "object_type": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recovery_point_id": p.point,
        "restore_target_info": {
            "datasource_auth_credentials": {
                "object_type": "SecretStoreBasedAuthCredentials",
                "secret_store_resource": {
                    "secret_store_type": "AzureKeyVault",
                    "uri": p.restorer_secret,
                },
            },
            "datasource_info": {
                "datasource_type": db_type,
                "object_type": "Datasource",
                "resource_id": f"{server_id}/databases/{database}",
                "resource_location": REGION,
                "resource_name": database,
                "resource_type": db_type,
                "resource_uri": "",
            },
            "datasource_set_info": {
                "datasource_type": db_type,
                "object_type": "DatasourceSet",
                "resource_id": server_id,
                "resource_location": REGION,
                "resource_name": "src",
                "resource_type": "Microsoft.DBforPostgreSQL/servers",
                "resource_uri": "",
            },
            "object_type": "RestoreTargetInfo",
            "recovery_option": "FailIfExists",
            "restore_location": REGION,
        },
        "source_data_store_type": "VaultStore",
    }


def test_restore_database_from_an_az_restore_request(protected: Protected, tmp_path: Path) -> None:
    """`--restore-request FILE` takes the JSON az writes: the two CLIs interoperate."""
    p = protected
    server_id = p.server.cli_json("server", "show", "--name", "src")["id"]
    request = tmp_path / "restore.json"
    request.write_text(json.dumps(_az_restore_request(p, server_id, "shop_from_az")))
    job = p.server.cli_json(
        "restore", "database", "--vault-name", VAULT, "--instance", INSTANCE,
        "--restore-request", str(request), "--wait",
    )  # fmt: skip
    assert job["properties"]["status"] == "Completed", job["properties"]["errorDetails"]
    assert_same_data(
        snapshot(p.source.admin_dsn(SOURCE_DB)), snapshot(p.source.admin_dsn("shop_from_az"))
    )


def test_tables_at_80_columns_keep_the_ids_to_copy(protected: Protected) -> None:
    """An 80-column terminal shows the point and job ids whole; --query -o tsv prints one."""
    p = protected
    env = {**p.server._process_env(), "COLUMNS": "80"}

    def run(*args: str) -> str:
        proc = subprocess.run(
            [PGVAULT_BIN, *args], env=env, capture_output=True, text=True, timeout=120,
            check=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        return proc.stdout

    points = run("recovery-point", "list", "--vault-name", VAULT, "--instance", INSTANCE)
    assert max(len(line) for line in points.splitlines()) <= 80
    assert p.point in points
    jobs = run("job", "list", "--vault-name", VAULT)
    assert p.backup_job in jobs
    first = run("recovery-point", "list", "--vault-name", VAULT, "--instance", INSTANCE,
                "--query", "[0].name", "-o", "tsv")  # fmt: skip
    assert first == f"{p.point}\n"
