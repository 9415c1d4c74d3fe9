"""Keys kept beside the metadata: the master key (secrets at rest) and the token signing key.

A key comes from the environment when given there, else from a file under
`home/keys` created on first start with mode 0600. AES-256-GCM binds each
ciphertext to its owner (associated data), so a row copied elsewhere won't decrypt.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pgvault.errors import Code, PgVaultError


def _decode_key(text: str) -> bytes:
    text = text.strip()
    for decode in (bytes.fromhex, base64.urlsafe_b64decode, base64.b64decode):
        try:
            key = decode(text)
        except (ValueError, binascii.Error):
            continue
        if len(key) == 32:
            return key
    raise PgVaultError(
        "The master key must be 32 bytes, hex or base64 encoded "
        "(make one with: python -c 'import secrets; print(secrets.token_hex(32))').",
        code=Code.InvalidMasterKey,
    )


def _tighten(path: Path, mode: int) -> None:
    """Give a file or directory pgvault owns `mode` (keys must not be readable by others)."""
    st = path.stat()
    if st.st_uid == os.geteuid() and (st.st_mode & 0o7777) != mode:
        os.chmod(path, mode)


def load_or_create_key(path: Path, from_env: str | None = None) -> bytes:
    """The 32-byte key given in `from_env`, else the one in `path` (created if missing)."""
    if from_env:
        return _decode_key(from_env)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _tighten(path.parent, 0o700)
    if path.exists():
        _tighten(path, 0o600)
        return _decode_key(path.read_text())
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex())
    return key


class Cipher:
    """AES-256-GCM with a random 96-bit nonce per message, stored in front of the ciphertext."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: bytes, associated: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._aead.encrypt(nonce, plaintext, associated.encode())

    def decrypt(self, blob: bytes, associated: str) -> bytes:
        try:
            if len(blob) < 12 + 16:
                raise InvalidTag
            return self._aead.decrypt(blob[:12], blob[12:], associated.encode())
        except InvalidTag:
            raise PgVaultError(
                "A stored secret could not be decrypted: the master key differs from the one "
                "it was written with. Start pgvault with the original PGVAULT_MASTER_KEY.",
                code=Code.SecretDecryptionFailed,
            ) from None
