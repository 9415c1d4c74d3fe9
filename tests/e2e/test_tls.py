"""TLS (issue 8, finding 8): `pgvault serve` over https, and clients that verify it.

The attack: tokens, client secrets and the portal's cookies crossed the network in clear,
because `pgvault serve` spoke plain http only. Now a real `pgvault serve --tls-cert
--tls-key` (self-signed, SAN 127.0.0.1) serves https only with HSTS; the CLI and the
official Azure SDK work when told which CA to trust, and refuse the service otherwise
(no request, so no secret, leaves the client); a key file others may read refuses start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ServiceRequestError
from azure.mgmt.dataprotection import DataProtectionMgmtClient
from azure.mgmt.dataprotection import models as m

from tests.e2e.conftest import HOST, PGVAULT_BIN, PgvaultServer, running_pgvault
from tests.support.pg import free_port
from tests.support.tls import TlsFiles, make_self_signed

HSTS = "max-age=31536000"
REGION = "eastus"


@pytest.fixture(scope="module")
def srv(pgvault_tls_module_server: PgvaultServer) -> PgvaultServer:
    return pgvault_tls_module_server


def _cli_env(srv: PgvaultServer, **change: str | None) -> dict[str, str]:
    """The server's CLI environment with variables changed (None removes one)."""
    env = srv._process_env()
    for name, value in change.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PGVAULT_BIN, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- the service speaks https, and says so -----------------------------------------------------


def test_serve_announces_https_and_the_public_url_is_https(srv: PgvaultServer) -> None:
    assert srv.url.startswith("https://")
    assert f"pgvault serving on https://{HOST}:{srv.port}" in srv.log()
    kv = srv.cli_json("keyvault", "create", "--name", "kvtls", "--region", REGION)
    assert kv["properties"]["vaultUri"].startswith(f"https://{HOST}:{srv.port}/"), kv


def test_cli_over_https_with_the_ca_bundle(srv: PgvaultServer) -> None:
    """PGVAULT_CA_BUNDLE = the self-signed certificate: the CLI works as over http."""
    assert srv.env["PGVAULT_CA_BUNDLE"] == str(srv.tls.cert if srv.tls else None)
    token = srv.token()
    assert len(token) > 20  # a signed token, fetched over https (used below)
    vault = srv.cli_json("vault", "create", "--name", "tlsvault", "--region", REGION)
    assert vault["name"] == "tlsvault"
    listed = srv.cli_json("vault", "list")
    assert "tlsvault" in [v["name"] for v in listed["value"]]
    resp = srv.api("GET", "/subscriptions", token=token)
    assert resp.status_code == 200, resp.text


def test_hsts_on_every_response(srv: PgvaultServer) -> None:
    """Open, authenticated, denied, unknown, failed-sign-in and token answers all carry HSTS."""
    creds = srv.admin_credentials()
    token = srv.client_token(creds["clientId"], creds["clientSecret"])
    answers = {
        "healthz": srv.api("GET", "/healthz"),
        "authenticated": srv.api("GET", "/subscriptions", token=token),
        "no token": srv.api("GET", "/subscriptions"),
        "unknown path": srv.api("GET", "/no/such/path", token=token),
        "bad sign-in": srv.api(
            "POST",
            "/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "nobody",
                "client_secret": "wrong",
            },
        ),
        "token": srv.api(
            "POST",
            "/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": creds["clientId"],
                "client_secret": creds["clientSecret"],
            },
        ),
    }
    statuses = {name: r.status_code for name, r in answers.items()}
    assert statuses["healthz"] == statuses["authenticated"] == statuses["token"] == 200, statuses
    assert statuses["no token"] == 401, statuses
    assert statuses["unknown path"] == 404, statuses
    assert statuses["bad sign-in"] in (400, 401), statuses
    hsts = {n: r.headers.get("strict-transport-security") for n, r in answers.items()}
    assert hsts == dict.fromkeys(answers, HSTS)


# -- clients verify the certificate -------------------------------------------------------------


def test_cli_without_the_bundle_refuses_with_the_fix(srv: PgvaultServer) -> None:
    """No PGVAULT_CA_BUNDLE: the system store does not trust a self-signed certificate."""
    for args in (["vault", "list"], ["auth", "token"]):
        proc = _run(args, _cli_env(srv, PGVAULT_CA_BUNDLE=None))
        assert proc.returncode == 1, proc
        assert "error CertificateVerifyFailed" in proc.stderr, proc.stderr
        assert "fix: Set PGVAULT_CA_BUNDLE" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
        assert proc.stdout == ""  # no token printed: nothing was sent, nothing came back


def test_cli_with_another_ca_refuses(srv: PgvaultServer, tmp_path: Path) -> None:
    """A bundle that does not hold the service's CA is refused the same way (not 'any PEM')."""
    other = make_self_signed(tmp_path, "other")
    proc = _run(["vault", "list"], _cli_env(srv, PGVAULT_CA_BUNDLE=str(other.cert)))
    assert proc.returncode == 1, proc
    assert "error CertificateVerifyFailed" in proc.stderr, proc.stderr
    assert "fix: Set PGVAULT_CA_BUNDLE" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_with_an_unreadable_bundle_says_so(srv: PgvaultServer, tmp_path: Path) -> None:
    for bundle in (tmp_path / "missing.pem", srv.home / "credentials.json"):
        proc = _run(["vault", "list"], _cli_env(srv, PGVAULT_CA_BUNDLE=str(bundle)))
        assert proc.returncode == 1, proc
        assert "error InvalidCaBundle" in proc.stderr, proc.stderr
        assert "fix: Set PGVAULT_CA_BUNDLE" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_plain_http_to_the_tls_port_fails(srv: PgvaultServer) -> None:
    """http:// to the https port gets no answer: a secret sent that way reaches no handler."""
    creds = srv.admin_credentials()
    plain = f"http://{HOST}:{srv.port}"
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{plain}/healthz", timeout=10)
    with pytest.raises(httpx.HTTPError):
        httpx.post(
            f"{plain}/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": creds["clientId"],
                  "client_secret": creds["clientSecret"]},
            timeout=10,
        )  # fmt: skip
    proc = _run(["vault", "list"], _cli_env(srv, PGVAULT_URL=plain))
    assert proc.returncode == 1, proc
    assert "error ServiceUnreachable" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


# -- the official Azure SDK over https ----------------------------------------------------------


class PgvaultCredential:
    """An Azure TokenCredential over pgvault's token endpoint (over https the SDK's own
    bearer policy uses it; no custom authentication policy needed)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 600)


@pytest.fixture
def sdk_token(srv: PgvaultServer) -> str:
    creds = srv.admin_credentials()
    return srv.client_token(creds["clientId"], creds["clientSecret"])


def _sdk(srv: PgvaultServer, token: str, **kw: Any) -> DataProtectionMgmtClient:
    sub = srv.subscription()
    return DataProtectionMgmtClient(
        PgvaultCredential(token),  # type: ignore[arg-type]
        sub,
        base_url=srv.url,
        polling_interval=1,
        **kw,
    )


def test_sdk_over_https_with_the_ca_bundle(srv: PgvaultServer, sdk_token: str) -> None:
    assert srv.tls is not None
    with _sdk(srv, sdk_token, connection_verify=str(srv.tls.cert)) as client:
        vault = client.backup_vaults.begin_create_or_update(
            "default",
            "sdktls",
            m.BackupVaultResource(
                location=REGION,
                identity=m.DppIdentityDetails(type="SystemAssigned"),
                properties=m.BackupVault(
                    storage_settings=[
                        m.StorageSetting(datastore_type="VaultStore", type="LocallyRedundant")
                    ]
                ),
            ),
        ).result()  # a long-running operation: its polling URLs are https too
        assert vault.properties.provisioning_state == "Succeeded"
        assert client.backup_vaults.get("default", "sdktls").name == "sdktls"
        names = [v.name for v in client.backup_vaults.get_in_resource_group("default")]
        assert "sdktls" in names


def test_sdk_over_https_with_requests_ca_bundle(
    srv: PgvaultServer, sdk_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK's transport (requests) also takes the CA from REQUESTS_CA_BUNDLE."""
    assert srv.tls is not None
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(srv.tls.cert))
    with _sdk(srv, sdk_token) as client:
        vaults = list(client.backup_vaults.get_in_resource_group("default"))
        assert all(v.name for v in vaults)  # listed over https, the CA from the environment


def test_sdk_without_the_ca_refuses(
    srv: PgvaultServer, sdk_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    with _sdk(srv, sdk_token) as client, pytest.raises(ServiceRequestError) as info:
        client.backup_vaults.get("default", "sdktls")
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)


# -- configuration: flags or environment; the key file must be private ---------------------------


def test_tls_from_the_environment(request: pytest.FixtureRequest, tls_files: TlsFiles) -> None:
    """PGVAULT_TLS_CERT / PGVAULT_TLS_KEY alone (no flags) serve https with HSTS."""
    with running_pgvault(request, tls_files, tls_from_env=True) as server:
        assert "--tls-cert" not in server.serve_args
        resp = server.api("GET", "/healthz")
        assert resp.status_code == 200
        assert resp.headers["strict-transport-security"] == HSTS
        assert server.cli_json("vault", "list")["value"] == []
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://{HOST}:{server.port}/healthz", timeout=10)


@pytest.mark.parametrize(("mode", "via"), [(0o644, "flags"), (0o640, "environment")])
def test_a_key_file_others_may_read_refuses_start(
    tls_files: TlsFiles, tmp_path: Path, mode: int, via: str
) -> None:
    refused_home = tmp_path / "home"
    key = tmp_path / "server.key"
    shutil.copyfile(tls_files.key, key)
    key.chmod(mode)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGVAULT_")}
    env.update(PGVAULT_HOME=str(refused_home), NO_COLOR="1", TERM="dumb", COLUMNS="200")
    args = ["serve", "--host", HOST, "--port", str(free_port())]
    if via == "flags":
        args += ["--tls-cert", str(tls_files.cert), "--tls-key", str(key)]
    else:
        env.update(PGVAULT_TLS_CERT=str(tls_files.cert), PGVAULT_TLS_KEY=str(key))
    proc = _run(args, env)
    assert proc.returncode == 1, proc
    assert f"error TlsKeyFileTooOpen: The TLS key file {key}" in proc.stderr, proc.stderr
    assert f"(mode {mode:04o})" in proc.stderr
    assert f"fix: Make it readable by its owner only: chmod 600 {key}" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "serving on" not in proc.stdout
    assert not refused_home.exists()  # refused before any state was written


def test_half_a_tls_configuration_refuses_start(tls_files: TlsFiles, tmp_path: Path) -> None:
    refused_home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGVAULT_")}
    env.update(PGVAULT_HOME=str(refused_home), NO_COLOR="1", TERM="dumb", COLUMNS="200")
    args = ["serve", "--host", HOST, "--port", str(free_port()), "--tls-cert", str(tls_files.cert)]
    proc = _run(args, env)
    assert proc.returncode == 1, proc
    assert "error TlsSettingsInvalid" in proc.stderr, proc.stderr
    assert "--tls-key (PGVAULT_TLS_KEY) is not set" in proc.stderr
    assert "fix: Give both --tls-cert and --tls-key" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not refused_home.exists()
