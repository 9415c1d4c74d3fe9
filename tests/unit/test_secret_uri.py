"""Secret URIs: pgvault's own and Azure Key Vault's."""

from __future__ import annotations

import pytest

from pgvault import secrets
from pgvault.errors import UserError


@pytest.mark.parametrize(
    ("uri", "vault", "name", "version"),
    [
        ("http://127.0.0.1:8080/keyvaults/kv1/secrets/pg-conn", "kv1", "pg-conn", None),
        ("http://h:8080/keyvaults/kv1/secrets/pg-conn/abc123", "kv1", "pg-conn", "abc123"),
        ("http://h:8080/keyvaults/kv1/secrets/pg-conn/", "kv1", "pg-conn", None),
        ("https://vault.example/base/keyvaults/kv1/secrets/n", "kv1", "n", None),
        ("http://h/KEYVAULTS/KV1/SECRETS/Name/V1", "kv1", "Name", "V1"),
        ("https://mykv.vault.azure.net/secrets/pg-conn/0123abcd", "mykv", "pg-conn", "0123abcd"),
        ("https://mykv.vault.azure.net/secrets/pg-conn", "mykv", "pg-conn", None),
        ("https://MyKV.vault.azure.net/Secrets/pg-conn", "mykv", "pg-conn", None),
        ("https://kv.vault.usgovcloudapi.net/secrets/n/v", "kv", "n", "v"),
        ("  http://h/keyvaults/kv/secrets/n  ", "kv", "n", None),
    ],
)
def test_parse_secret_uri(uri: str, vault: str, name: str, version: str | None) -> None:
    assert secrets.parse_secret_uri(uri) == secrets.SecretRef(vault, name, version)


@pytest.mark.parametrize(
    "uri",
    [
        "",
        None,
        "not a uri",
        "http://h/keyvaults/kv1",
        "http://h/keyvaults/kv1/secrets",
        "http://h/keyvaults/kv1/secrets/n/v/extra",
        "http://h/keyvaults/kv1/keys/n",
        "http://h/keyvaults",
        "http://h/secrets/n",
        "https://example.com/secrets/n",
        "https://mykv.vault.azure.net/",
        "https://mykv.vault.azure.net/keys/n",
        "https://mykv.vault.azure.net/secrets/n/v/x",
    ],
)
def test_malformed_secret_uri(uri: str | None) -> None:
    with pytest.raises(UserError) as info:
        secrets.parse_secret_uri(uri)  # type: ignore[arg-type]
    assert info.value.code == "UserErrorInvalidSecret"
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("base", "version", "expected"),
    [
        ("http://h:1/", None, "http://h:1/keyvaults/kv/secrets/n"),
        ("http://h:1", "v1", "http://h:1/keyvaults/kv/secrets/n/v1"),
    ],
)
def test_secret_uri_builder_round_trips(base: str, version: str | None, expected: str) -> None:
    uri = secrets.secret_uri(base, "kv", "n", version)
    assert uri == expected
    assert secrets.parse_secret_uri(uri) == secrets.SecretRef("kv", "n", version)
