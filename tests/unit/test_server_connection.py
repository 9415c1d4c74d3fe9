"""A secret's address, a server's connection settings, and what libpq is told (issue 8.1)."""

from __future__ import annotations

import datetime
import itertools
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import text

from pgvault import connstr, migrations
from pgvault.db import make_engine
from pgvault.engine import pgtools
from pgvault.errors import PgVaultError
from tests.support.apiapp import Api
from tests.support.fakepg import fake_postgres

PG = "providers/Microsoft.DBforPostgreSQL/servers"
_counter = itertools.count()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("db.example", 5432), ("DB.Example.", None)),
        (("127.0.0.1", None), ("127.0.0.1", 5432)),
        (("::1", 6000), ("[0:0::1]", 6000)),
    ],
)
def test_same_address(a: tuple[str, int | None], b: tuple[str, int | None]) -> None:
    assert connstr.same_address(*a, *b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("db.example", 5432), ("db.example", 5433)),
        (("db.example", None), ("db.example", 6432)),
        (("localhost", 5432), ("127.0.0.1", 5432)),  # names are compared, not resolved
        (("db.example", 5432), ("db.example.evil", 5432)),
    ],
)
def test_different_address(a: tuple[str, int | None], b: tuple[str, int | None]) -> None:
    assert not connstr.same_address(*a, *b)


def test_stricter_sslmode() -> None:
    assert connstr.stricter_sslmode("prefer", "require") == "require"
    assert connstr.stricter_sslmode("verify-full", "require") == "verify-full"
    assert connstr.stricter_sslmode("prefer", "disable") == "prefer"


def _endpoint(**kw: object) -> pgtools.Endpoint:
    creds = connstr.parse("Server=h;Port=5432;User Id=u;Password=Pw-123;")
    return pgtools.Endpoint("h", 5432, creds, **kw)  # type: ignore[arg-type]


def test_psycopg_connections_require_scram_and_tools_get_it_by_environment() -> None:
    ep = _endpoint()
    psycopg_side = conninfo_to_dict(ep.conninfo("d", with_password=True))
    assert psycopg_side["require_auth"] == "scram-sha-256"
    tool_side = conninfo_to_dict(ep.conninfo("d"))
    assert "require_auth" not in tool_side  # libpq 15's pg_dump would reject the option
    assert "password" not in tool_side
    assert ep.env()["PGREQUIREAUTH"] == "scram-sha-256"
    relaxed = _endpoint(password_auth="md5")
    assert relaxed.require_auth == "scram-sha-256,md5"


def test_root_certificate_goes_to_a_private_file() -> None:
    ep = _endpoint(sslmode="verify-full", root_cert=_ca_pem())
    info = conninfo_to_dict(ep.conninfo("d", with_password=True))
    assert info["sslmode"] == "verify-full"
    path = Path(str(info["sslrootcert"]))
    assert path.read_text() == ep.root_cert
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.parent.stat().st_uid == os.geteuid()
    assert conninfo_to_dict(ep.conninfo("d"))["sslrootcert"] == str(path)


@pytest.mark.parametrize("method", ["cleartext", "md5"])
def test_weak_exchange_gets_no_password(method: str) -> None:
    with fake_postgres(method) as fake:
        creds = connstr.parse(f"Server=127.0.0.1;Port={fake.port};User Id=u;Password=Pw-9z;")
        with pytest.raises(PgVaultError) as exc:
            pgtools.connect(pgtools.Endpoint("127.0.0.1", fake.port, creds), "d")
        assert exc.value.code == "UserErrorInsecurePasswordAuthentication"
        assert fake.password_messages() == 0
        assert not fake.saw("Pw-9z")


def _ca_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unit CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def rg(api: Api) -> str:
    name = f"rg-conn-{next(_counter)}"
    assert api.put(api.rg(name), {"location": "eastus"}).status_code == 200
    return api.rg(name)


def test_server_defaults_and_settings(api: Api, rg: str) -> None:
    r = api.put(f"{rg}/{PG}/pg1", {"location": "eastus",
                                   "properties": {"fullyQualifiedDomainName": "db.example"}})  # fmt: skip
    assert r.status_code == 200, r.text
    props = r.json()["properties"]
    assert props["sslMode"] == "prefer"
    assert props["passwordAuthentication"] == "scram-sha-256"
    assert props["sslRootCertificate"] is None
    pem = _ca_pem()
    body = {
        "location": "eastus",
        "properties": {
            "fullyQualifiedDomainName": "db.example",
            "sslMode": "verify-full",
            "sslRootCertificate": pem,
            "passwordAuthentication": "md5",
        },
    }
    r = api.put(f"{rg}/{PG}/pg1", body)
    assert r.status_code == 200, r.text
    props = r.json()["properties"]
    assert (props["sslMode"], props["sslRootCertificate"], props["passwordAuthentication"]) == (
        "verify-full",
        pem,
        "md5",
    )


@pytest.mark.parametrize(
    "props",
    [
        {"sslMode": "disable"},
        {"sslMode": "allow"},
        {"sslMode": "verify-full"},  # no root certificate
        {"sslMode": "verify-ca"},
        {"sslRootCertificate": "not a certificate"},
        {"passwordAuthentication": "password"},
        {"passwordAuthentication": "trust"},
    ],
)
def test_bad_connection_settings_are_refused(api: Api, rg: str, props: dict[str, str]) -> None:
    body = {"location": "eastus", "properties": {"fullyQualifiedDomainName": "db.x", **props}}
    r = api.put(f"{rg}/{PG}/pg9", body)
    assert r.status_code == 400, r.text
    assert api.get(f"{rg}/{PG}").json()["value"] == []


def test_address_change_is_audited_with_old_and_new(api: Api, rg: str) -> None:
    def put(port: int) -> None:
        body = {"location": "eastus",
                "properties": {"fullyQualifiedDomainName": "db.audit", "port": port}}  # fmt: skip
        assert api.put(f"{rg}/{PG}/moved", body).status_code == 200

    put(5432)
    put(5432)  # unchanged: no change row
    put(55999)
    r = api.get(
        f"/subscriptions/{api.sub}/providers/Microsoft.Insights/eventtypes/management/values"
    )
    assert r.status_code == 200, r.text
    details = [
        e["properties"]["details"]
        for e in r.json()["value"]
        if e["resourceId"].endswith("/servers/moved") and "details" in e["properties"]
    ]
    assert details == [{"changed": {"address": {"old": "db.audit:5432", "new": "db.audit:55999"}}}]


def test_upgrade_keeps_servers_and_gives_them_the_defaults(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    try:
        migrations.upgrade(engine, "0003")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO servers (id, arm_key, name, subscription_id, resource_group,"
                    " location, created_at, host, port) VALUES ('s1', 'k', 'pg1', 'sub', 'rg',"
                    " 'eastus', '2026-01-01 00:00:00.000000', 'db.example', 5432)"
                )
            )
        migrations.upgrade(engine)
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT host, port, sslmode, ssl_root_cert, password_authentication"
                    " FROM servers"
                )
            ).one()
        assert tuple(row) == ("db.example", 5432, "prefer", None, "scram-sha-256")
    finally:
        engine.dispose()


def test_only_jobkinds_base_builds_an_endpoint() -> None:
    """`jobkinds.base.endpoint` checks the secret's address; nothing else may build one."""
    import ast

    import pgvault

    root = Path(pgvault.__file__).parent
    builders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                if name == "Endpoint":
                    builders.append(str(path.relative_to(root)))
    assert builders == ["jobkinds/base.py"]
