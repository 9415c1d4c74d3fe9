"""A planted password must never show: not in CLI output, API bodies, logs, files or job errors.

The source server's role `leaky` gets a distinctive password (``ALTER ROLE ... PASSWORD``),
and the key-vault secret holds a connection string with it. A whole CLI flow runs on that
secret -- protect, backup, restore as a database and as files, a restore to the wrong
server, a backup that fails because the password changed -- plus listings, the audit log
and plain API GETs. Then every output, every response body, the serve log and every byte
of every file under PGVAULT_HOME (the SQLite database and its WAL included) is searched.
The secret is stored AES-GCM encrypted, so the plaintext must not appear anywhere.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.e2e.conftest import HOST, SOURCE_DB, PgvaultServer
from tests.support.pg import PgCluster

REGION = "eastus"
VAULT = "v1"
INSTANCE = "shop-leak"
ROLE = "leaky"
LEAK = f"Pw-LEAK-{uuid.uuid4().hex}"


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _holding(root: Path, needle: bytes) -> list[str]:
    """Files under `root` whose raw bytes contain `needle`."""
    return [str(p) for p in _files(root) if needle in p.read_bytes()]


def _stored_secret(home: Path, name: str) -> tuple[bytes, str]:
    """(ciphertext, associated data) of the newest version of a secret, read from SQLite."""
    with sqlite3.connect(f"file:{home / 'pgvault.db'}?mode=ro", uri=True) as db:
        row = db.execute(
            "SELECT s.ciphertext, k.id, s.name, s.version FROM secret_versions s"
            " JOIN key_vaults k ON k.id = s.key_vault_id WHERE s.name = ? ORDER BY s.id DESC",
            (name,),
        ).fetchone()
    assert row is not None, f"secret {name!r} not stored"
    return bytes(row[0]), f"{row[1]}/{row[2]}/{row[3]}"


def test_planted_password_never_leaks(
    pgvault_server: PgvaultServer, source_pg: PgCluster, target_pg: PgCluster
) -> None:
    srv = pgvault_server
    source_pg.execute(f"CREATE ROLE {ROLE} LOGIN SUPERUSER")
    source_pg.execute(f"ALTER ROLE {ROLE} PASSWORD '{LEAK}'")
    connstr = (
        f"Server={HOST};Port={source_pg.port};Database={SOURCE_DB};User Id={ROLE};Password={LEAK};"
    )

    # -- set-up and protection, all through the CLI ------------------------------------------
    srv.cli("server", "add", "--name", "src", "--host", HOST, "--port", str(source_pg.port),
            "--region", REGION)  # fmt: skip
    # The wrong target: another server, where the role does not exist.
    srv.cli("server", "add", "--name", "wrong", "--host", HOST, "--port", str(target_pg.port),
            "--region", REGION)  # fmt: skip
    srv.cli("keyvault", "create", "--name", "kv1", "--region", REGION)
    secret = srv.cli_json(
        "keyvault", "secret", "set", "--vault-name", "kv1", "--name", "leakpw", input=connstr
    )["properties"]["secretUri"]  # fmt: skip
    vault = srv.cli_json("vault", "create", "--name", VAULT, "--region", REGION)
    group = vault["id"].split("/providers/", 1)[0]
    for role in ("Reader", "Key Vault Secrets User", "Storage Blob Data Contributor"):
        srv.grant(f"vault:{VAULT}", role, group)
    srv.cli("policy", "create", "--vault-name", VAULT, "--name", "weekly")
    files_dir = srv.home.parent / "storage-sa1"
    files_dir.mkdir()
    srv.cli("storage-account", "create", "--name", "sa1", "--region", REGION, "--kind", "local",
            "--path", str(files_dir))  # fmt: skip
    container = srv.cli_json(
        "storage-account", "container", "create", "--account-name", "sa1", "--name", "dumps"
    )
    srv.cli("instance", "create", "--vault-name", VAULT, "--server", "src", "--database",
            SOURCE_DB, "--policy", "weekly", "--secret", secret, "--name", INSTANCE)  # fmt: skip

    # -- backup, restore as a database, restore as files ---------------------------------
    backup = srv.cli_json("backup", "now", "--vault-name", VAULT, "--instance", INSTANCE, "--wait")
    assert backup["properties"]["status"] == "Completed", backup["properties"]["errorDetails"]
    point = srv.cli_json("recovery-point", "list", "--vault-name", VAULT, "--instance", INSTANCE)[
        "value"
    ][0]["name"]

    def restore_db(secret_uri: str, server: str, database: str) -> list[str]:
        return [
            "restore", "database", "--vault-name", VAULT, "--instance", INSTANCE,
            "--recovery-point", point, "--secret", secret_uri, "--target-server", server,
            "--target-database", database, "--wait",
        ]  # fmt: skip

    done = srv.cli_json(*restore_db(secret, "src", "shop_copy"))
    assert done["properties"]["status"] == "Completed", done["properties"]["errorDetails"]
    assert source_pg.database_exists("shop_copy")
    files = srv.cli_json(
        "restore", "files", "--vault-name", VAULT, "--instance", INSTANCE,
        "--recovery-point", point, "--container", container["properties"]["url"],
        "--file-prefix", "leak/shop", "--wait",
    )  # fmt: skip
    assert files["properties"]["status"] == "Completed", files["properties"]["errorDetails"]

    # -- failures that handle the password ---------------------------------------------------
    # The wrong target server: not the address the secret names, so no login is even tried.
    wrong = srv.cli(*restore_db(secret, "wrong", "x"), check=False)
    assert wrong.returncode == 1, wrong
    assert "UserErrorSecretServerMismatch" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    assert not target_pg.database_exists("x")
    # A connection string that cannot be parsed (the quote around the password never closes).
    garbled = srv.cli_json(
        "keyvault", "secret", "set", "--vault-name", "kv1", "--name", "garbled",
        input=f'Server={HOST};User Id={ROLE};Password="{LEAK};',
    )["properties"]["secretUri"]  # fmt: skip
    unparsed = srv.cli(*restore_db(garbled, "src", "y"), check=False)
    assert unparsed.returncode == 1, unparsed
    assert "UserErrorSecretValueInUnsupportedFormat" in unparsed.stderr
    # The password changes after protection: the next backup job fails at login.
    source_pg.execute(f"ALTER ROLE {ROLE} PASSWORD 'changed-{uuid.uuid4().hex}'")
    failed = srv.cli(
        "backup", "now", "--vault-name", VAULT, "--instance", INSTANCE, "--wait",
        "--output", "json", check=False,
    )  # fmt: skip
    assert failed.returncode == 1, failed
    failed_job = json.loads(failed.stdout)
    assert failed_job["properties"]["status"] == "Failed"
    assert failed_job["properties"]["errorDetails"][0]["code"] == "UserErrorDBUserAuthFailed"

    # -- everything a user would look at ---------------------------------------------------
    jobs = srv.cli_json("job", "list", "--vault-name", VAULT)["value"]
    assert {j["properties"]["status"] for j in jobs} == {"Completed", "Failed"}
    for job in jobs:
        shown = srv.cli_json("job", "show", job["name"], "--vault-name", VAULT)
        assert LEAK not in json.dumps(shown["properties"].get("errorDetails"))
        srv.cli("job", "show", job["name"], "--vault-name", VAULT)  # the table view too
    srv.cli_json("audit", "list")
    srv.cli("audit", "list")
    srv.cli_json("instance", "show", "--vault-name", VAULT, "--name", INSTANCE)
    srv.cli("instance", "show", "--vault-name", VAULT, "--name", INSTANCE)
    srv.cli_json("recovery-point", "list", "--vault-name", VAULT, "--instance", INSTANCE)
    srv.cli_json("keyvault", "secret", "list", "--vault-name", "kv1")
    srv.cli_json("server", "show", "--name", "src")

    # -- and the API itself -----------------------------------------------------------------
    token = srv.token()
    sub = group.split("/")[2]
    bi = f"{vault['id']}/backupInstances/{INSTANCE}"
    kv = f"{group}/providers/Microsoft.KeyVault/vaults/kv1"
    bodies: dict[str, str] = {}
    for path in (
        vault["id"],
        bi,
        f"{bi}/recoveryPoints",
        f"{bi}/recoveryPoints/{point}",
        f"{vault['id']}/backupJobs",
        f"{vault['id']}/backupJobs/{failed_job['name']}",
        f"{kv}/secrets/leakpw",
        f"{kv}/secrets",
        f"{group}/providers/Microsoft.DBforPostgreSQL/servers/src",
        f"/subscriptions/{sub}/providers/Microsoft.Insights/eventtypes/management/values",
        "/providers/Microsoft.Authorization/roleAssignments",
        "/pgvault/principals",
    ):
        resp = srv.api("GET", path, token=token)
        assert resp.status_code == 200, (path, resp.status_code, resp.text)
        bodies[path] = resp.text
    # The secret URI itself is an address, not an endpoint that hands out the value.
    resp = srv.api("GET", secret.removeprefix(srv.url), token=token)
    bodies[secret] = resp.text

    # -- the checks ------------------------------------------------------------------------
    assert len(srv.cli_outputs) > 25
    leaked_cli = [out for out in srv.cli_outputs if LEAK in out]
    assert leaked_cli == [], leaked_cli[0][:2000]
    leaked_api = [path for path, body in bodies.items() if LEAK in body]
    assert leaked_api == [], leaked_api
    assert LEAK not in srv.log()
    for job in jobs:
        assert LEAK not in json.dumps(job)

    needle = LEAK.encode()
    assert _holding(srv.home, needle) == []
    assert _holding(files_dir, needle) == []  # the restored dump files
    assert any(p.name == "pgvault.db" for p in _files(srv.home))

    # It is in the database -- as AES-GCM ciphertext that decrypts with the master key.
    ciphertext, associated = _stored_secret(srv.home, "leakpw")
    assert needle not in ciphertext
    key = bytes.fromhex((srv.home / "keys" / "master.key").read_text().strip())
    plain = AESGCM(key).decrypt(ciphertext[:12], ciphertext[12:], associated.encode())
    assert plain.decode() == connstr
    assert needle not in _stored_secret(srv.home, "garbled")[0]


def test_tokens_and_client_secret_never_logged(
    pgvault_server: PgvaultServer,
) -> None:
    srv = pgvault_server
    creds = srv.admin_credentials()
    tokens = {srv.token(), srv.client_token(creds["clientId"], creds["clientSecret"])}
    sp = srv.cli_json("principal", "create", "--name", "robot", "--type", "service-principal")
    tokens.add(srv.client_token(sp["clientId"], sp["secret"]))
    user = srv.cli_json("principal", "create", "--name", "carol", "--type", "user")
    srv.cli("login", "--username", "carol", input=user["secret"])
    cache: dict[str, Any] = json.loads((srv.home / "cli-cache.json").read_text())
    tokens.add(cache["token"])
    srv.cli("vault", "list", check=False)  # as carol (no role): denied, but her token was sent
    srv.cli("logout")
    # Failed sign-ins with secrets that look real.
    bad = srv.api("POST", "/oauth2/token", data={"grant_type": "client_credentials",
                                                 "client_id": sp["clientId"],
                                                 "client_secret": sp["secret"] + "x"})  # fmt: skip
    assert bad.status_code == 401
    for t in tokens:
        assert srv.api("GET", "/subscriptions", token=t).status_code in (200, 401)

    log = srv.log()
    assert "POST /oauth2/token" in log  # the calls were logged ...
    for t in tokens:
        assert t not in log  # ... but never a token,
        assert t.split(".", 1)[1] not in log  # not even its signature,
    for value in (creds["clientSecret"], sp["secret"], user["secret"]):
        assert value not in log  # nor a client secret or password
    for out in srv.cli_outputs:
        assert creds["clientSecret"] not in out
