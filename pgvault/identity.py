"""Principals and bearer tokens.

Principals are users, service principals (client id + secret, for scripts and the
SDK) and each vault's system-assigned managed identity. Secrets are argon2 hashes;
tokens are short-lived HMAC-signed claims, checked in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Boolean, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pgvault import arm
from pgvault.db import Base, UTCDateTime
from pgvault.errors import Conflict, NotFound, Unauthorized

USER = "User"
SERVICE_PRINCIPAL = "ServicePrincipal"
MANAGED_IDENTITY = "ManagedIdentity"

_hasher = PasswordHasher()
# A fixed hash so an unknown client id costs as much as a wrong secret.
_DUMMY_HASH = _hasher.hash("pgvault-dummy-secret")


class Principal(Base):
    __tablename__ = "principals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    type: Mapped[str] = mapped_column(String(32))
    client_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    secret_hash: Mapped[str | None] = mapped_column(String(256))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True)
class Caller:
    """Who is calling: the principal a verified token names."""

    principal_id: str
    name: str
    type: str


def create_principal(
    s: Session, name: str, type_: str, now: datetime, *, with_secret: bool = True
) -> tuple[Principal, str | None]:
    """Create a principal; returns it and its generated secret (shown once, stored hashed)."""
    arm.check_name(name, "principal")
    if s.scalar(select(Principal).where(Principal.name == name)) is not None:
        raise Conflict(f"A principal named {name!r} already exists.", code="PrincipalExists")
    secret = secrets.token_urlsafe(32) if with_secret else None
    principal = Principal(
        id=str(uuid.uuid4()),
        name=name,
        type=type_,
        client_id=str(uuid.uuid4()) if type_ != MANAGED_IDENTITY else None,
        secret_hash=_hasher.hash(secret) if secret else None,
        enabled=True,
        created_at=now,
    )
    s.add(principal)
    s.flush()
    return principal, secret


def get_principal(s: Session, principal_id: str) -> Principal:
    p = s.get(Principal, principal_id)
    if p is None:
        raise NotFound(f"Principal {principal_id!r} not found.", code="PrincipalNotFound")
    return p


def authenticate_client(s: Session, client_id: str, client_secret: str) -> Principal:
    """Check a client id + secret; the same error and cost whatever is wrong."""
    p = s.scalar(select(Principal).where(Principal.client_id == client_id))
    try:
        _hasher.verify(p.secret_hash if p and p.secret_hash else _DUMMY_HASH, client_secret)
    except (VerificationError, InvalidHashError):
        p = None
    if p is None or not p.enabled:
        raise Unauthorized(
            "Invalid client credentials. Check the client id and secret "
            "(pgvault principal create prints them once).",
            code="InvalidClientCredentials",
        )
    return p


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_token(key: bytes, principal: Principal, now: datetime, lifetime: int) -> str:
    """A signed bearer token naming the principal, valid for `lifetime` seconds."""
    claims = {
        "sub": principal.id,
        "name": principal.name,
        "typ": principal.type,
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp()) + lifetime,
        "jti": uuid.uuid4().hex,
    }
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    return f"{body}.{sig}"


def verify_token(key: bytes, token: str, now: datetime) -> dict[str, object]:
    """The claims of a valid, unexpired token; Unauthorized otherwise."""
    invalid = Unauthorized(
        "The bearer token is invalid or expired. Get a new one with `pgvault auth token`.",
        code="InvalidAuthenticationToken",
    )
    try:
        body, sig = token.split(".")
        expected = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected.encode(), sig.encode()):
            raise invalid
        claims: dict[str, object] = json.loads(_unb64(body))
    except (ValueError, UnicodeError, json.JSONDecodeError):
        raise invalid from None
    if not isinstance(claims, dict):
        raise invalid
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp < now.timestamp():
        raise invalid
    return claims
