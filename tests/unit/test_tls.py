"""TLS settings (issue 8, finding 8): start-up checks, HSTS only when on, how the CLI verifies.

The end-to-end proof is tests/e2e/test_tls.py (a real `pgvault serve` over https); these
pin the edges cheaply: every refused configuration, HSTS on a 500 too, the CLI's trust store.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from pgvault.api.app import create_app
from pgvault.cli.client import ApiError, tls_context
from pgvault.config import Settings
from pgvault.context import Context
from pgvault.errors import Code, PgVaultError
from pgvault.server import check_tls
from tests.support.tls import TlsFiles, make_self_signed

PACKAGE = Path(__file__).resolve().parents[2] / "pgvault"
HSTS = "max-age=31536000"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_self_signed(tmp_path_factory.mktemp("tls"))


def _refused(cert: Path | None, key: Path | None) -> PgVaultError:
    with pytest.raises(PgVaultError) as info:
        check_tls(cert, key)
    return info.value


# -- start-up refuses a bad TLS configuration ------------------------------------------------


def test_no_tls_and_a_good_pair_start(tls: TlsFiles) -> None:
    check_tls(None, None)
    check_tls(tls.cert, tls.key)


def test_half_a_configuration_is_refused(tls: TlsFiles) -> None:
    assert _refused(tls.cert, None).code == Code.TlsSettingsInvalid
    error = _refused(None, tls.key)
    assert error.code == Code.TlsSettingsInvalid
    assert "--tls-cert (PGVAULT_TLS_CERT) is not set" in error.message


def test_missing_files_are_refused(tls: TlsFiles, tmp_path: Path) -> None:
    assert "does not exist" in _refused(tmp_path / "none.crt", tls.key).message
    assert "does not exist" in _refused(tls.cert, tmp_path).message  # a directory


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660, 0o601])
def test_a_key_open_to_others_is_refused(tls: TlsFiles, tmp_path: Path, mode: int) -> None:
    key = tmp_path / "k.pem"
    key.write_bytes(tls.key.read_bytes())
    key.chmod(mode)
    error = _refused(tls.cert, key)
    assert error.code == Code.TlsKeyFileTooOpen
    assert f"mode {mode:04o}" in error.message
    assert error.recommended_action == f"Make it readable by its owner only: chmod 600 {key}"
    key.chmod(0o400)
    check_tls(tls.cert, key)  # owner-only (even read-only) is fine


def test_a_key_of_another_certificate_is_refused(tls: TlsFiles, tmp_path: Path) -> None:
    other = make_self_signed(tmp_path, "other")
    error = _refused(tls.cert, other.key)
    assert error.code == Code.TlsSettingsInvalid
    assert "cannot be used" in error.message


def test_a_passphrase_protected_key_is_refused_without_a_prompt(
    tls: TlsFiles, tmp_path: Path
) -> None:
    key = serialization.load_pem_private_key(tls.key.read_bytes(), password=None)
    locked = tmp_path / "locked.key"
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    locked.chmod(0o600)
    assert _refused(tls.cert, locked).code == Code.TlsSettingsInvalid


def test_settings_read_tls_from_the_environment(
    tls: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGVAULT_TLS_CERT", str(tls.cert))
    monkeypatch.setenv("PGVAULT_TLS_KEY", str(tls.key))
    settings = Settings.from_env()
    assert (settings.tls_cert, settings.tls_key, settings.tls) == (tls.cert, tls.key, True)
    override = Settings.from_env(tls_cert=Path("/x.crt"))
    assert override.tls_cert == Path("/x.crt")  # the command-line option wins
    monkeypatch.delenv("PGVAULT_TLS_CERT")
    monkeypatch.delenv("PGVAULT_TLS_KEY")
    assert not Settings.from_env().tls


# -- HSTS: on every response when TLS is on, never otherwise -----------------------------------


def _client(home: Path, tls: TlsFiles | None) -> Iterator[TestClient]:
    files = {"tls_cert": tls.cert, "tls_key": tls.key} if tls else {}
    ctx = Context.create(Settings(home=home, datastore_url="memory://", **files))  # type: ignore[arg-type]
    app = create_app(ctx, start_workers=False)

    def boom() -> None:
        raise RuntimeError("unexpected")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    ctx.db.dispose()


@pytest.fixture(scope="module")
def https_app(tmp_path_factory: pytest.TempPathFactory, tls: TlsFiles) -> Iterator[TestClient]:
    yield from _client(tmp_path_factory.mktemp("https"), tls)


@pytest.fixture(scope="module")
def http_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    yield from _client(tmp_path_factory.mktemp("http"), None)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/subscriptions", 401),
        ("GET", "/no/such/path", 404),
        ("POST", "/oauth2/token", 400),
        ("GET", "/boom", 500),  # answered by the outermost error handler
    ],
)
def test_hsts_on_every_response_when_tls_is_on(
    https_app: TestClient, http_app: TestClient, method: str, path: str, status: int
) -> None:
    on = https_app.request(method, path)
    assert on.status_code == status, on.text
    assert on.headers.get_list("strict-transport-security") == [HSTS]
    off = http_app.request(method, path)
    assert off.status_code == status, off.text
    assert "strict-transport-security" not in off.headers


# -- the CLI verifies the service's certificate ------------------------------------------------


def test_cli_trusts_only_the_ca_bundle_when_set(
    tls: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGVAULT_CA_BUNDLE", str(tls.cert))
    ctx = tls_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    assert ctx.cert_store_stats()["x509_ca"] == 1


def test_cli_uses_the_system_store_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGVAULT_CA_BUNDLE", raising=False)
    ctx = tls_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    assert ctx.cert_store_stats()["x509_ca"] > 1  # the system's CAs (or certifi's, if none)


def test_an_unusable_ca_bundle_is_an_error_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    for bundle in (tmp_path / "missing.pem", tmp_path / "junk.pem"):
        monkeypatch.setenv("PGVAULT_CA_BUNDLE", str(bundle))
        with pytest.raises(ApiError) as info:
            tls_context()
        assert info.value.code == "InvalidCaBundle"
        assert info.value.action is not None
        assert "PGVAULT_CA_BUNDLE" in info.value.action


def test_nothing_in_pgvault_turns_certificate_checks_off() -> None:
    forbidden = ("verify=False", "CERT_NONE", "check_hostname = False", "_create_unverified")
    found = [
        f"{path.relative_to(PACKAGE)}: {word}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for word in forbidden
        if word in path.read_text()
    ]
    assert found == []
