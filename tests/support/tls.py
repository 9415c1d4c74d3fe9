"""A self-signed TLS certificate for tests (SAN 127.0.0.1 and localhost), made once per session.

The certificate is its own CA: point clients at `TlsFiles.cert` (PGVAULT_CA_BUNDLE,
`connection_verify=`, `REQUESTS_CA_BUNDLE`, `ssl.create_default_context(cafile=...)`).
The key is written 0600, as `pgvault serve` requires. Any test can use the `tls_files`
fixture (re-exported by tests/e2e/conftest.py) or call `make_self_signed(dir)` directly.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    """A server certificate (PEM; also the CA bundle that trusts it) and its key (0600)."""

    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts this certificate only."""
        return ssl.create_default_context(cafile=str(self.cert))


def make_self_signed(
    directory: Path, name: str = "pgvault-test", extra_dns: tuple[str, ...] = ()
) -> TlsFiles:
    """Write `name.crt` and `name.key` (0600) into `directory`: self-signed, valid one day.

    Shaped like `openssl req -x509` output (CA:TRUE, key identifiers) so that strict
    verifiers accept it as its own trust anchor, plus serverAuth and the loopback SANs.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    *(x509.DNSName(d) for d in extra_dns),  # e.g. "*.vault.pgvault.test"
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return TlsFiles(cert_path, key_path)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """One self-signed certificate and key for the whole session (SAN 127.0.0.1, localhost)."""
    return make_self_signed(tmp_path_factory.mktemp("tls"))
