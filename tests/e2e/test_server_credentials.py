"""Issue 8 finding 1: a key-vault password goes only where its secret says, and only over an
exchange that does not hand it over.

The attack as it was reported: a Contributor (may manage resources, may not read secrets)
re-points a registered server at a PostgreSQL listener they control, then asks for a
backup; the vault, which holds Key Vault Secrets User, connected there and answered the
listener's cleartext password request. Here the listener is a fake on 127.0.0.1 that asks
for a cleartext (or md5) password and records whatever it receives.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import pwd
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.conftest import (
    HOST,
    SOURCE_DB,
    PgvaultServer,
    superuser_connstr,
)
from tests.support.fakepg import fake_postgres
from tests.support.pg import PgCluster
from tests.support.sampledb import build_rich_database

REGION = "eastus"
VAULT = "vault1"
SERVERS = "providers/Microsoft.DBforPostgreSQL/servers"


def _group(srv: PgvaultServer) -> str:
    return f"/subscriptions/{srv.subscription()}/resourceGroups/default"


def _secret(srv: PgvaultServer, name: str, value: str) -> str:
    uri: str = srv.cli_json(
        "keyvault", "secret", "set", "--vault-name", "kv1", "--name", name, input=value
    )["properties"]["secretUri"]
    return uri


def _vault(srv: PgvaultServer) -> dict[str, Any]:
    """A key vault, a vault with a policy, and the vault identity's roles on the group."""
    srv.cli("keyvault", "create", "--name", "kv1", "--region", REGION)
    vault: dict[str, Any] = srv.cli_json("vault", "create", "--name", VAULT, "--region", REGION)
    for role in ("Reader", "Key Vault Secrets User"):
        srv.grant(f"vault:{VAULT}", role, _group(srv))
    srv.cli("policy", "create", "--vault-name", VAULT, "--name", "weekly")
    return vault


def _protect(srv: PgvaultServer, server: str, secret: str, name: str) -> Any:
    return srv.cli(
        "instance", "create", "--vault-name", VAULT, "--server", server, "--database",
        SOURCE_DB, "--policy", "weekly", "--secret", secret, "--name", name, check=False,
    )  # fmt: skip


def _backup(srv: PgvaultServer, instance: str) -> dict[str, Any]:
    done = srv.cli("backup", "now", "--vault-name", VAULT, "--instance", instance, "--wait",
                   "--output", "json", check=False)  # fmt: skip
    job: dict[str, Any] = json.loads(done.stdout)
    return job


def _user_token(srv: PgvaultServer, name: str, role: str) -> str:
    user = srv.cli_json("principal", "create", "--name", name, "--type", "user")
    srv.grant(name, role, _group(srv))
    resp = srv.api(
        "POST",
        "/oauth2/token",
        data={"grant_type": "password", "username": name, "password": user["secret"]},
    )
    assert resp.status_code == 200, resp.text
    token: str = resp.json()["access_token"]
    return token


def _finished_backups(srv: PgvaultServer) -> list[dict[str, Any]]:
    jobs = srv.cli_json("job", "list", "--vault-name", VAULT)["value"]
    return [
        j
        for j in jobs
        if j["properties"]["operation"] == "Backup"
        and j["properties"]["status"] not in ("InProgress", "NotStarted")
    ]


def test_contributor_cannot_repoint_a_server_to_steal_its_password(
    pgvault_server: PgvaultServer, source_pg: PgCluster
) -> None:
    srv = pgvault_server
    password = source_pg.superuser_password
    srv.cli("server", "add", "--name", "pg1", "--host", HOST, "--port", str(source_pg.port),
            "--region", REGION)  # fmt: skip
    vault = _vault(srv)
    secret = _secret(srv, "shop-backup", superuser_connstr(source_pg))
    created = _protect(srv, "pg1", secret, "shop")
    assert created.returncode == 0, created.stderr
    first = _backup(srv, "shop")
    assert first["properties"]["status"] == "Completed", first["properties"]["errorDetails"]

    mallory = _user_token(srv, "mallory", "Contributor")
    with fake_postgres("cleartext") as fake:
        # The Contributor re-points pg1 at their listener (allowed: they manage resources) ...
        put = srv.api(
            "PUT",
            f"{_group(srv)}/{SERVERS}/pg1",
            token=mallory,
            json={
                "location": REGION,
                "properties": {"fullyQualifiedDomainName": HOST, "port": fake.port},
            },
        )
        assert put.status_code == 200, put.text
        # ... and asks for a backup, which the vault identity runs with the secret.
        post = srv.api(
            "POST",
            f"{vault['id']}/backupInstances/shop/backup",
            token=mallory,
            json={"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {}}},
        )
        assert post.status_code == 202, post.text
        deadline = time.monotonic() + 60
        while len(_finished_backups(srv)) < 2:
            assert time.monotonic() < deadline, "the backup job did not finish"
            time.sleep(0.2)
        job = next(j for j in _finished_backups(srv) if j["name"] != first["name"])
        assert job["properties"]["status"] == "Failed"
        error = job["properties"]["errorDetails"][0]
        assert error["code"] == "UserErrorSecretServerMismatch"
        assert f"{HOST}:{fake.port}" in error["message"]
        assert str(source_pg.port) not in error["message"]  # the secret's address stays unread

        # Review + restore to the re-pointed server is refused the same way.
        restore_secret = _secret(srv, "restorer", superuser_connstr(source_pg))
        point = srv.cli_json("recovery-point", "list", "--vault-name", VAULT, "--instance",
                             "shop")["value"][0]["name"]  # fmt: skip
        refused = srv.cli(
            "restore", "database", "--vault-name", VAULT, "--instance", "shop",
            "--recovery-point", point, "--target-server", "pg1", "--target-database",
            "stolen", "--secret", restore_secret, "--wait", check=False,
        )  # fmt: skip
        assert refused.returncode == 1, refused
        assert "UserErrorSecretServerMismatch" in refused.stderr
        assert "fix:" in refused.stderr

        # The listener never saw a connection, let alone the password.
        assert fake.connections == 0
        assert not fake.saw(password)
        assert fake.password_messages() == 0

    # The address change is in the audit log: who, the old and the new address.
    events = srv.cli_json("audit", "list")["value"]
    changes = [
        e["properties"]["details"]["changed"]
        for e in events
        if e["caller"] == "mallory" and "details" in e["properties"]
    ]
    assert {"old": f"{HOST}:{source_pg.port}", "new": f"{HOST}:{fake.port}"} in [
        c.get("address") for c in changes
    ]

    # Put back where its secret says, the server backs up again.
    srv.cli("server", "add", "--name", "pg1", "--host", HOST, "--port", str(source_pg.port),
            "--region", REGION)  # fmt: skip
    again = _backup(srv, "shop")
    assert again["properties"]["status"] == "Completed", again["properties"]["errorDetails"]


def test_secret_without_a_server_is_refused(
    pgvault_server: PgvaultServer, source_pg: PgCluster
) -> None:
    srv = pgvault_server
    srv.cli("server", "add", "--name", "pg1", "--host", HOST, "--port", str(source_pg.port),
            "--region", REGION)  # fmt: skip
    _vault(srv)
    nameless = _secret(
        srv, "nameless", f"User Id=postgres;Password={source_pg.superuser_password};"
    )
    refused = _protect(srv, "pg1", nameless, "shop")
    assert refused.returncode == 1, refused
    assert "UserErrorSecretServerNotNamed" in refused.stderr
    assert source_pg.superuser_password not in refused.stderr


@pytest.mark.parametrize("method", ["cleartext", "md5"])
def test_weak_password_exchange_is_refused_by_default(
    pgvault_server: PgvaultServer, method: str
) -> None:
    srv = pgvault_server
    _vault(srv)
    password = "weak-exchange-Pw-7f3a"
    with fake_postgres(method) as fake:
        srv.cli("server", "add", "--name", "weak", "--host", HOST, "--port", str(fake.port),
                "--region", REGION)  # fmt: skip
        secret = _secret(
            srv, "weak", f"Server={HOST};Port={fake.port};User Id=postgres;Password={password};"
        )
        refused = _protect(srv, "weak", secret, "weak-db")
        assert refused.returncode == 1, refused
        assert "UserErrorInsecurePasswordAuthentication" in refused.stderr
        assert fake.connections >= 1
        assert fake.password_messages() == 0
        assert not fake.saw(password)

        # Relaxed to md5 (audited): an md5 server gets the salted hash, never the password;
        # a cleartext request is still refused.
        srv.cli("server", "add", "--name", "weak", "--host", HOST, "--port", str(fake.port),
                "--region", REGION, "--password-authentication", "md5")  # fmt: skip
        relaxed = _protect(srv, "weak", secret, "weak-db")
        assert relaxed.returncode == 1, relaxed
        expected = (
            "UserErrorDBUserAuthFailed"
            if method == "md5"
            else ("UserErrorInsecurePasswordAuthentication")
        )
        assert expected in relaxed.stderr
        assert fake.password_messages() == (1 if method == "md5" else 0)
        assert not fake.saw(password)
    events = srv.cli_json("audit", "list")["value"]
    changed = [e["properties"]["details"]["changed"] for e in events
               if "details" in e["properties"]]  # fmt: skip
    assert {"old": "scram-sha-256", "new": "md5"} in [
        c.get("passwordAuthentication") for c in changed
    ]


# -- TLS: sslmode verify-full with the server's root certificate ---------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def tls_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PgCluster, Path, Path]]:
    """A cluster serving TLS with a certificate for 127.0.0.1 signed by a fresh CA; yields
    it with that CA's PEM file and an unrelated CA's PEM file."""
    ca_key, ca = _ca("pgvault test CA")
    _, other_ca = _ca("someone else's CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(HOST))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cluster = PgCluster.start("e2e-tls")
    try:
        crt, pkey = cluster.data_dir / "server.crt", cluster.data_dir / "server.key"
        crt.write_bytes(_pem(cert))
        pkey.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        pkey.chmod(0o600)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for f in (crt, pkey):
                os.chown(f, pw.pw_uid, pw.pw_gid)
        cluster.execute("ALTER SYSTEM SET ssl = on")
        cluster.execute("SELECT pg_reload_conf()")
        build_rich_database(cluster, SOURCE_DB)
        cluster.create_role("restorer", None, createdb=True)
        cluster.execute("ALTER ROLE restorer PASSWORD 'restorer-tls-pw'")
        certs = tmp_path_factory.mktemp("tls-certs")
        (certs / "ca.pem").write_bytes(_pem(ca))
        (certs / "other.pem").write_bytes(_pem(other_ca))
        yield cluster, certs / "ca.pem", certs / "other.pem"
    finally:
        cluster.stop()


def test_verify_full_with_the_servers_root_certificate(
    pgvault_server: PgvaultServer, tls_pg: tuple[PgCluster, Path, Path]
) -> None:
    srv = pgvault_server
    cluster, ca_pem, other_pem = tls_pg
    assert cluster.query("SHOW ssl") == [("on",)]

    # verify-full needs the root certificate.
    missing = srv.cli("server", "add", "--name", "tls", "--host", HOST, "--port",
                      str(cluster.port), "--region", REGION, "--sslmode", "verify-full",
                      check=False)  # fmt: skip
    assert missing.returncode == 1, missing
    assert "sslRootCertificate" in missing.stderr

    def register(root: Path) -> dict[str, Any]:
        shown: dict[str, Any] = srv.cli_json(
            "server", "add", "--name", "tls", "--host", HOST, "--port", str(cluster.port),
            "--region", REGION, "--sslmode", "verify-full", "--ssl-root-cert", str(root),
        )  # fmt: skip
        return shown

    shown = register(ca_pem)
    assert shown["properties"]["sslMode"] == "verify-full"
    assert shown["properties"]["sslRootCertificate"] == ca_pem.read_text()
    _vault(srv)
    secret = _secret(srv, "tls-admin", superuser_connstr(cluster))
    created = _protect(srv, "tls", secret, "tls-shop")
    assert created.returncode == 0, created.stderr
    done = _backup(srv, "tls-shop")
    assert done["properties"]["status"] == "Completed", done["properties"]["errorDetails"]
    point = srv.cli_json("recovery-point", "list", "--vault-name", VAULT, "--instance",
                         "tls-shop")["value"][0]["name"]  # fmt: skip
    restorer = _secret(
        srv,
        "tls-restorer",
        f"Server={HOST};Port={cluster.port};User Id=restorer;Password=restorer-tls-pw;",
    )
    restored = srv.cli_json(
        "restore", "database", "--vault-name", VAULT, "--instance", "tls-shop",
        "--recovery-point", point, "--target-server", "tls", "--target-database",
        "shop_tls_copy", "--secret", restorer, "--wait",
    )  # fmt: skip
    assert restored["properties"]["status"] == "Completed", restored["properties"]
    assert cluster.database_exists("shop_tls_copy")

    # With a root certificate that did not sign the server's, nothing connects.
    register(other_pem)
    failed = _backup(srv, "tls-shop")
    assert failed["properties"]["status"] == "Failed"
    assert failed["properties"]["errorDetails"][0]["code"] == (
        "UserErrorServerCertificateNotTrusted"
    )
