"""Secrets at rest: AES-256-GCM with associated data, and the key files."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from pgvault.crypto import Cipher, load_or_create_key
from pgvault.errors import PgVaultError

KEY = bytes(range(32))


def test_round_trip() -> None:
    c = Cipher(KEY)
    blob = c.encrypt(b"Server=h;Password=p", "kv-id/name/v1")
    assert b"Password" not in blob
    assert c.decrypt(blob, "kv-id/name/v1") == b"Server=h;Password=p"


def test_round_trip_empty_and_large() -> None:
    c = Cipher(KEY)
    for data in (b"", b"x" * 100_000):
        assert c.decrypt(c.encrypt(data, "a"), "a") == data


def test_nonce_is_random() -> None:
    c = Cipher(KEY)
    assert c.encrypt(b"same", "a") != c.encrypt(b"same", "a")


def _flip(blob: bytes, index: int) -> bytes:
    b = bytearray(blob)
    b[index] ^= 0x01
    return bytes(b)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda b: _flip(b, 0), id="nonce"),
        pytest.param(lambda b: _flip(b, 12), id="ciphertext"),
        pytest.param(lambda b: _flip(b, -1), id="tag"),
        pytest.param(lambda b: b[:-1], id="truncated-tag"),
        pytest.param(lambda b: b + b"\x00", id="extended"),
        pytest.param(lambda b: b[:20], id="truncated-short"),
    ],
)
def test_tampered_ciphertext_fails(tamper) -> None:  # type: ignore[no-untyped-def]
    c = Cipher(KEY)
    blob = c.encrypt(b"secret value", "ad")
    with pytest.raises(PgVaultError) as info:
        c.decrypt(tamper(blob), "ad")
    assert info.value.code == "SecretDecryptionFailed"
    assert "secret value" not in str(info.value)


@pytest.mark.parametrize("blob", [b"", b"abc", b"0123456789ab"])
def test_garbage_blob_fails_with_decryption_error(blob: bytes) -> None:
    """A row truncated below nonce+tag length is tampering too, not an internal ValueError."""
    with pytest.raises(PgVaultError) as info:
        Cipher(KEY).decrypt(blob, "ad")
    assert info.value.code == "SecretDecryptionFailed"


def test_different_associated_data_fails() -> None:
    c = Cipher(KEY)
    blob = c.encrypt(b"v", "kv1/name/v1")
    with pytest.raises(PgVaultError) as info:
        c.decrypt(blob, "kv2/name/v1")
    assert info.value.code == "SecretDecryptionFailed"


def test_different_key_fails() -> None:
    blob = Cipher(KEY).encrypt(b"v", "a")
    with pytest.raises(PgVaultError) as info:
        Cipher(bytes(32)).decrypt(blob, "a")
    assert info.value.code == "SecretDecryptionFailed"


def test_key_file_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    key = load_or_create_key(path)
    assert len(key) == 32
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    assert load_or_create_key(path) == key
    assert path.read_text().strip() == key.hex()


def test_two_key_files_differ(tmp_path: Path) -> None:
    assert load_or_create_key(tmp_path / "a.key") != load_or_create_key(tmp_path / "b.key")


def test_existing_key_file_with_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_text(f"\n  {KEY.hex()}  \n")
    assert load_or_create_key(path) == KEY


@pytest.mark.parametrize(
    "text",
    [
        KEY.hex(),
        KEY.hex().upper(),
        base64.b64encode(KEY).decode(),
        base64.urlsafe_b64encode(bytes([0xFB] * 32)).decode(),
        f"  {KEY.hex()}\n",
    ],
)
def test_env_key_formats(tmp_path: Path, text: str) -> None:
    path = tmp_path / "master.key"
    key = load_or_create_key(path, text)
    assert len(key) == 32
    assert key in (KEY, bytes([0xFB] * 32))
    assert not path.exists(), "an env key must not create a key file"


def test_env_key_wins_over_file(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    load_or_create_key(path)
    assert load_or_create_key(path, KEY.hex()) == KEY


@pytest.mark.parametrize(
    "text",
    [
        "tooshort",
        "5e6a13c741d3d6d297c6265ed0ec0e4d",  # 16 bytes in hex: too short
        "ab" * 33,  # 33 bytes in hex: too long
        base64.b64encode(bytes(31)).decode(),
        "zz" * 32,
        "!!!not a key!!!",
    ],
)
def test_bad_env_key_is_a_clear_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(PgVaultError) as info:
        load_or_create_key(tmp_path / "k", text)
    assert info.value.code == "InvalidMasterKey"
    assert "32 bytes" in info.value.message
    assert text not in info.value.message


def test_bad_key_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_text("corrupt")
    with pytest.raises(PgVaultError) as info:
        load_or_create_key(path)
    assert info.value.code == "InvalidMasterKey"
