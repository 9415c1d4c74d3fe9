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
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Boolean, String, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from pgvault import arm
from pgvault.errors import Code, Conflict, NotFound, TooManyAttempts, Unauthorized
from pgvault.orm import Base, UTCDateTime

USER = "User"
SERVICE_PRINCIPAL = "ServicePrincipal"
MANAGED_IDENTITY = "ManagedIdentity"


def azure_principal_type(type_: str) -> str:
    """The principalType Azure shows for a principal: a managed identity is a service
    principal in Entra ID (Azure has no `ManagedIdentity` principal type)."""
    return SERVICE_PRINCIPAL if type_ == MANAGED_IDENTITY else type_


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


class RevokedToken(Base):
    """Revoked token ids, kept until the token would have expired anyway."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LoginFailures(Base):
    """Consecutive failed logins per user name or client id, for brute-force lockout."""

    __tablename__ = "login_failures"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=5)


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
        raise Conflict(f"A principal named {name!r} already exists.", code=Code.PrincipalExists)
    secret = secrets.token_urlsafe(32) if with_secret else None
    principal = Principal(
        id=str(uuid.uuid4()),
        name=name,
        type=type_,
        client_id=str(uuid.uuid4()) if type_ == SERVICE_PRINCIPAL else None,
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
        raise NotFound(f"Principal {principal_id!r} not found.", code=Code.PrincipalNotFound)
    return p


def _locked(key: str, wait: int) -> TooManyAttempts:
    error = TooManyAttempts(
        f"Too many failed sign-ins for {key.split(':', 1)[-1]!r}; try again in {wait} s.",
        recommended_action="Wait, then sign in with the right credentials.",
    )
    error.retry_after = wait
    return error


def _insert_ignore(s: Session, key: str, now: datetime) -> None:
    """Create the name's row if missing, without racing another sign-in that does the same."""
    dialect = s.get_bind().dialect.name
    values = {"key": key, "failures": 0, "locked_until": None, "last_at": now}
    if dialect == "postgresql":
        s.execute(pg_insert(LoginFailures).values(**values).on_conflict_do_nothing())
    else:
        s.execute(sqlite_insert(LoginFailures).values(**values).on_conflict_do_nothing())


def take_attempt(s: Session, key: str, now: datetime) -> None:
    """Count a sign-in attempt before its password is checked, atomically.

    One conditional UPDATE takes a slot while fewer than MAX_FAILURES attempts are counted
    and the name is not locked, so parallel attempts cannot all pass: at most MAX_FAILURES
    checks run, the rest get 429. A known and an unknown name are counted alike (the key is
    the name as given). `finish_attempt` clears the count after a success or locks the name
    once MAX_FAILURES attempts failed. An expired lock starts a fresh count.
    """
    _insert_ignore(s, key, now)
    s.execute(
        update(LoginFailures)
        .where(
            LoginFailures.key == key,
            LoginFailures.locked_until.is_not(None),
            LoginFailures.locked_until <= now,
        )
        .values(failures=0, locked_until=None)
    )
    taken = s.execute(
        update(LoginFailures)
        .where(
            LoginFailures.key == key,
            LoginFailures.locked_until.is_(None),
            LoginFailures.failures < MAX_FAILURES,
        )
        .values(failures=LoginFailures.failures + 1, last_at=now)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        row = s.get(LoginFailures, key)
        until = row.locked_until if row is not None and row.locked_until else now + LOCKOUT
        raise _locked(key, int((until - now).total_seconds()) + 1)


def finish_attempt(s: Session, key: str, ok: bool, now: datetime) -> None:
    """After the check: a success clears the name's count; a failure that used the last
    slot locks the name for LOCKOUT."""
    if ok:
        s.execute(delete(LoginFailures).where(LoginFailures.key == key))
        return
    s.execute(
        update(LoginFailures)
        .where(
            LoginFailures.key == key,
            LoginFailures.failures >= MAX_FAILURES,
            LoginFailures.locked_until.is_(None),
        )
        .values(locked_until=now + LOCKOUT, last_at=now)
    )


def prune_lockouts(s: Session, now: datetime) -> int:
    """Delete lockout rows whose lock ended and whose last failure is older than LOCKOUT
    (a spray of unknown names leaves no lasting rows). Returns how many."""
    stale = now - LOCKOUT
    result = s.execute(
        delete(LoginFailures).where(
            (LoginFailures.locked_until.is_(None) | (LoginFailures.locked_until <= now)),
            (LoginFailures.last_at.is_(None) | (LoginFailures.last_at <= stale)),
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def lock_key(kind: str, name: str) -> str:
    return f"{kind}:{name}"[:200]


def _verify(principal: Principal | None, secret: str) -> bool:
    """Constant cost whether or not the principal exists (argon2 against a dummy hash)."""
    try:
        _hasher.verify(
            principal.secret_hash if principal and principal.secret_hash else _DUMMY_HASH, secret
        )
    except (VerificationError, InvalidHashError):
        return False
    return principal is not None and principal.enabled


def authenticate_client(s: Session, client_id: str, client_secret: str) -> Principal:
    """Check a service principal's client id + secret; the same error whatever is wrong."""
    p = s.scalar(
        select(Principal).where(
            Principal.client_id == client_id, Principal.type == SERVICE_PRINCIPAL
        )
    )
    if not _verify(p, client_secret) or p is None:
        raise Unauthorized(
            "Invalid client credentials. Check the client id and secret "
            "(pgvault principal create prints them once).",
            code=Code.InvalidClientCredentials,
        )
    return p


def authenticate_user(s: Session, username: str, password: str) -> Principal:
    """Check a user's name and password (grant_type=password)."""
    p = s.scalar(select(Principal).where(Principal.name == username, Principal.type == USER))
    if not _verify(p, password) or p is None:
        raise Unauthorized("Invalid user name or password.", code=Code.InvalidUserCredentials)
    return p


def revoke(s: Session, claims: dict[str, object]) -> None:
    jti, exp = claims.get("jti"), claims.get("exp")
    if isinstance(jti, str) and isinstance(exp, int) and s.get(RevokedToken, jti) is None:
        s.add(RevokedToken(jti=jti, expires_at=datetime.fromtimestamp(exp, UTC)))


def is_revoked(s: Session, claims: dict[str, object]) -> bool:
    jti = claims.get("jti")
    return isinstance(jti, str) and s.get(RevokedToken, jti) is not None


def list_principals(s: Session) -> list[Principal]:
    return list(s.scalars(select(Principal).order_by(Principal.created_at)))


def find_principal(s: Session, ref: str) -> Principal:
    """A principal by id, client id or name."""
    p = s.get(Principal, ref) or s.scalar(
        select(Principal).where((Principal.client_id == ref) | (Principal.name == ref))
    )
    if p is None:
        raise NotFound(
            f"No principal {ref!r}. List them with `pgvault principal list`.",
            code=Code.PrincipalNotFound,
        )
    return p


def by_name(s: Session, name: str) -> Principal | None:
    """The principal with exactly this name, if any (the bootstrap looks for `admin`)."""
    return s.scalar(select(Principal).where(Principal.name == name))


def check_deletable(principal: Principal) -> None:
    """A vault's managed identity is deleted with its vault, never on its own."""
    if principal.type == MANAGED_IDENTITY:
        raise Conflict(
            "A vault's managed identity is deleted with its vault.",
            code=Code.ManagedIdentityCannotBeDeleted,
        )


def delete_principal(s: Session, principal_id: str) -> None:
    """Delete a principal, if it exists; rbac.remove_assignments_of removes its roles first."""
    principal = s.get(Principal, principal_id)
    if principal is not None:
        s.delete(principal)


def caller_for(s: Session, claims: dict[str, object]) -> Caller:
    """Who a verified token's claims name, unless revoked or its principal is gone or disabled."""
    principal = s.get(Principal, str(claims.get("sub")))
    if principal is None or not principal.enabled or is_revoked(s, claims):
        raise Unauthorized(
            "The token was revoked, or its principal was deleted or disabled. Sign in again.",
            code=Code.InvalidAuthenticationToken,
        )
    return Caller(principal.id, principal.name, principal.type)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


#: The `use` claim of a refresh token: it buys new tokens at a token endpoint and is refused
#: as a bearer token (an access token has no `use`).
REFRESH = "refresh"
REFRESH_LIFETIME = 24 * 3600


def issue_token(
    key: bytes, principal: Principal, now: datetime, lifetime: int, *, use: str | None = None
) -> str:
    """A signed bearer token naming the principal, valid for `lifetime` seconds."""
    claims: dict[str, object] = {
        "sub": principal.id,
        "name": principal.name,
        "typ": principal.type,
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp()) + lifetime,
        "jti": uuid.uuid4().hex,
    }
    if use is not None:
        claims["use"] = use
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    return f"{body}.{sig}"


def id_token(key: bytes, claims: dict[str, object]) -> str:
    """An OpenID Connect id_token (a JWT, HS256 under a key derived from the token key).

    Clients (MSAL) read its claims to name the signed-in account; it is never a bearer
    token: it has three parts, and pgvault's bearer tokens two.
    """
    header = _b64(json.dumps({"typ": "JWT", "alg": "HS256"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    id_key = hmac.new(key, b"pgvault id_token", hashlib.sha256).digest()
    sig = _b64(hmac.new(id_key, f"{header}.{body}".encode(), hashlib.sha256).digest())
    return f"{header}.{body}.{sig}"


def client_info(principal_id: str, tenant: str) -> str:
    """MSAL's `client_info`: base64url JSON naming the account (uid) in its tenant (utid)."""
    return _b64(json.dumps({"uid": principal_id, "utid": tenant}).encode())


def verify_token(key: bytes, token: str, now: datetime) -> dict[str, object]:
    """The claims of a valid, unexpired token; Unauthorized otherwise."""
    invalid = Unauthorized(
        "The bearer token is invalid or expired. Get a new one with `pgvault auth token`.",
        code=Code.InvalidAuthenticationToken,
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


def verify_access_token(key: bytes, token: str, now: datetime) -> dict[str, object]:
    """The claims of a valid bearer token: a refresh token is not one."""
    claims = verify_token(key, token, now)
    if claims.get("use") is not None:
        raise Unauthorized(
            "A refresh token is not a bearer token: exchange it at the token endpoint.",
            code=Code.InvalidAuthenticationToken,
        )
    return claims
