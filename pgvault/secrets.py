"""Key vaults and their versioned secrets, encrypted at rest.

A secret is addressed by its URI, `{base}/keyvaults/{vault}/secrets/{name}[/{version}]`
(Azure's `https://{vault}.vault.azure.net/secrets/{name}[/{version}]` is accepted too);
without a version the newest enabled one is used. Values are decrypted only inside
the service, for the worker that needs them, and never returned by a read.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import ForeignKey, LargeBinary, String, UniqueConstraint, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pgvault import arm, armstore, regions, tenancy
from pgvault.armstore import ArmResource
from pgvault.crypto import Cipher
from pgvault.errors import BadRequest, Code, NotFound, UserError
from pgvault.orm import Base, UTCDateTime

MAX_SECRET_BYTES = 25 * 1024


class KeyVault(ArmResource, Base):
    __tablename__ = "key_vaults"

    name: Mapped[str] = mapped_column(String(24), unique=True)

    @property
    def arm_id(self) -> str:
        return arm.keyvault_id(self.subscription_id, self.resource_group, self.name)


class SecretVersion(Base):
    __tablename__ = "secret_versions"
    __table_args__ = (UniqueConstraint("key_vault_id", "name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    key_vault_id: Mapped[str] = mapped_column(ForeignKey("key_vaults.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(127))
    version: Mapped[str] = mapped_column(String(32))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    content_type: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


_SECRET_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")


@dataclass(frozen=True)
class SecretRef:
    """A parsed secret URI."""

    vault: str
    name: str
    version: str | None


def secret_uri(base_url: str, vault: str, name: str, version: str | None = None) -> str:
    """A secret's URI on pgvault's path-based key-vault address (`BASE/keyvaults/KV`)."""
    return secret_uri_at(f"{base_url.rstrip('/')}/keyvaults/{vault}", name, version)


def secret_uri_at(vault_base: str, name: str, version: str | None = None) -> str:
    """A secret's URI under its key vault's vaultUri (host-based or `/keyvaults/KV`)."""
    uri = f"{vault_base.rstrip('/')}/secrets/{name}"
    return f"{uri}/{version}" if version else uri


def parse_secret_uri(uri: str) -> SecretRef:
    """Parse a pgvault or Azure-style secret URI; a malformed one is UserErrorInvalidSecret."""
    parts = urlsplit(str(uri or "").strip())
    segs = [p for p in parts.path.split("/") if p]
    lowered = [p.lower() for p in segs]
    vault: str | None = None
    if "keyvaults" in lowered and lowered.index("keyvaults") + 1 < len(segs):
        i = lowered.index("keyvaults")
        vault, segs = segs[i + 1], segs[i + 2 :]
    elif parts.hostname and ".vault." in parts.hostname:
        vault = parts.hostname.split(".", 1)[0]
    if vault and len(segs) in (2, 3) and segs[0].lower() == "secrets":
        return SecretRef(vault.lower(), segs[1], segs[2] if len(segs) == 3 else None)
    raise UserError(
        f"{uri!r} is not a key-vault secret URI. Use the secretUri that "
        "`pgvault keyvault secret set` printed, e.g. "
        "'http://HOST:PORT/keyvaults/KV/secrets/NAME'.",
        code=Code.UserErrorInvalidSecret,
        recommended_action="Pass the secretUri of an existing key-vault secret.",
    )


def create_vault(
    s: Session, sub: str, rg: str, name: str, location: str, now: datetime
) -> KeyVault:
    """Create or update a key vault (PUT). Names are global, like Azure's."""
    arm.check_global_name(name, "key vault")
    tenancy.require_group(s, sub, rg)
    arm_id = arm.keyvault_id(sub, rg, name)
    taken = BadRequest(
        f"The key vault name {name!r} is already in use elsewhere; names are global.",
        code=Code.VaultAlreadyExists,
    )
    existing = armstore.find_global(s, KeyVault, name, arm_id, taken)
    if existing is not None:
        existing.location = regions.normalize(location)
        return existing
    return armstore.create(s, KeyVault, arm_id, sub, rg, name, regions.normalize(location), now)


def get_vault(s: Session, sub: str, rg: str, name: str) -> KeyVault:
    missing = (
        f"Key vault {name!r} not found in resource group {rg!r}. "
        "Create it with `pgvault keyvault create`."
    )
    return armstore.get(s, KeyVault, arm.keyvault_id(sub, rg, name), missing)


def list_vaults(s: Session, sub: str, rg: str | None) -> list[KeyVault]:
    return armstore.list_in(s, KeyVault, sub, rg)


def delete_vault(s: Session, kv: KeyVault) -> None:
    s.execute(delete(SecretVersion).where(SecretVersion.key_vault_id == kv.id))
    s.delete(kv)


def set_secret(
    s: Session,
    cipher: Cipher,
    kv: KeyVault,
    name: str,
    value: str,
    now: datetime,
    content_type: str | None = None,
) -> SecretVersion:
    """Store a new version of a secret, encrypted; the value is never stored in clear."""
    if not _SECRET_NAME.fullmatch(name or ""):
        raise BadRequest(
            f"Invalid secret name {name!r}: use 1-127 letters, digits or '-'.",
            code=Code.BadParameter,
        )
    if not isinstance(value, str) or not value:
        raise BadRequest("A secret needs a non-empty value.", code=Code.BadParameter)
    if len(value.encode()) > MAX_SECRET_BYTES:
        raise BadRequest("A secret value may be at most 25 KiB.", code=Code.BadParameter)
    version = uuid.uuid4().hex
    row = SecretVersion(
        key_vault_id=kv.id,
        name=name,
        version=version,
        ciphertext=cipher.encrypt(value.encode(), f"{kv.id}/{name}/{version}"),
        content_type=content_type,
        created_at=now,
    )
    s.add(row)
    s.flush()
    return row


def get_secret_version(s: Session, kv: KeyVault, name: str, version: str | None) -> SecretVersion:
    q = select(SecretVersion).where(SecretVersion.key_vault_id == kv.id, SecretVersion.name == name)
    if version:
        q = q.where(SecretVersion.version == version)
    row = s.scalar(q.order_by(SecretVersion.created_at.desc(), SecretVersion.id.desc()).limit(1))
    if row is None:
        raise UserError(
            f"Secret {name!r}{' version ' + version if version else ''} does not exist in key "
            f"vault {kv.name!r}.",
            code=Code.UserErrorInvalidSecret,
            recommended_action="Create the secret with `pgvault keyvault secret set`, "
            "or pass the URI of an existing one.",
        )
    return row


def get_latest(s: Session, kv: KeyVault, name: str) -> SecretVersion:
    """The newest version of a secret, for a read (GET): a missing one is a 404 here."""
    try:
        return get_secret_version(s, kv, name, None)
    except UserError as exc:
        raise NotFound(exc.message, code=Code.SecretNotFound) from None


def list_secrets(s: Session, kv: KeyVault) -> list[SecretVersion]:
    """The newest version of each secret in the vault."""
    rows = s.scalars(
        select(SecretVersion)
        .where(SecretVersion.key_vault_id == kv.id)
        .order_by(SecretVersion.name, SecretVersion.created_at.desc(), SecretVersion.id.desc())
    )
    newest: dict[str, SecretVersion] = {}
    for row in rows:
        newest.setdefault(row.name, row)
    return list(newest.values())


def locate(s: Session, uri: str) -> tuple[KeyVault, SecretRef]:
    """The key vault a secret URI points into (the secret itself may not exist)."""
    ref = parse_secret_uri(uri)
    kv = s.scalar(select(KeyVault).where(KeyVault.name == ref.vault))
    if kv is None:
        raise UserError(
            f"Key vault {ref.vault!r} named in the secret URI does not exist.",
            code=Code.UserErrorInvalidSecretStore,
            recommended_action="Create the key vault or fix the secret URI.",
        )
    return kv, ref


def resolve(s: Session, cipher: Cipher, uri: str) -> str:
    """The clear value behind a secret URI; for workers only, never for a response."""
    kv, ref = locate(s, uri)
    return decrypt(cipher, kv, get_secret_version(s, kv, ref.name, ref.version))


def decrypt(cipher: Cipher, kv: KeyVault, row: SecretVersion) -> str:
    """A version's clear value: for workers, and for the data plane's getSecret (audited)."""
    return cipher.decrypt(row.ciphertext, f"{kv.id}/{row.name}/{row.version}").decode()


def by_name(s: Session, name: str) -> KeyVault:
    """A key vault by its (global) name, as a data-plane address names it."""
    kv = s.scalar(select(KeyVault).where(KeyVault.name == name.lower()))
    if kv is None:
        raise NotFound(f"Key vault {name!r} not found.", code=Code.ResourceNotFound)
    return kv
