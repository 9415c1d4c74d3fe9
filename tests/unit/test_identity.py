"""Bearer tokens: HMAC-signed claims, checked for signature and expiry."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from pgvault.errors import Unauthorized
from pgvault.identity import SERVICE_PRINCIPAL, Principal, issue_token, verify_token

KEY = b"k" * 32
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _principal() -> Principal:
    return Principal(id="p-1", name="admin", type=SERVICE_PRINCIPAL)


def _invalid(key: bytes, token: str, now: datetime = NOW) -> Unauthorized:
    with pytest.raises(Unauthorized) as info:
        verify_token(key, token, now)
    assert info.value.code == "InvalidAuthenticationToken"
    assert info.value.status == 401
    return info.value


def test_round_trip() -> None:
    token = issue_token(KEY, _principal(), NOW, 3600)
    claims = verify_token(KEY, token, NOW + timedelta(seconds=10))
    assert claims["sub"] == "p-1"
    assert claims["name"] == "admin"
    assert claims["typ"] == SERVICE_PRINCIPAL
    assert claims["exp"] == int(NOW.timestamp()) + 3600


def test_tokens_are_unique() -> None:
    assert issue_token(KEY, _principal(), NOW, 60) != issue_token(KEY, _principal(), NOW, 60)


def test_valid_until_expiry_then_expired() -> None:
    token = issue_token(KEY, _principal(), NOW, 60)
    verify_token(KEY, token, NOW + timedelta(seconds=60))
    _invalid(KEY, token, NOW + timedelta(seconds=61))
    _invalid(KEY, token, NOW + timedelta(days=1))


def test_wrong_key() -> None:
    token = issue_token(KEY, _principal(), NOW, 60)
    _invalid(b"x" * 32, token)


def test_tampered_signature() -> None:
    body, sig = issue_token(KEY, _principal(), NOW, 60).split(".")
    other = "A" if sig[0] != "A" else "B"
    _invalid(KEY, f"{body}.{other}{sig[1:]}")


def test_tampered_claims() -> None:
    body, sig = issue_token(KEY, _principal(), NOW, 60).split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["exp"] += 10**6
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    _invalid(KEY, f"{forged}.{sig}")


@pytest.mark.parametrize(
    "token",
    ["", "garbage", ".", "a.b", "a.b.c", "...", "eyJ9.", "Bearer x", "a" * 5000],
)
def test_garbage_tokens(token: str) -> None:
    _invalid(KEY, token)


@pytest.mark.parametrize("token", ["abc.\u00e9", "\u00e9.sig", "abc.\u2603"])
def test_non_ascii_tokens_are_unauthorized(token: str) -> None:
    """hmac.compare_digest raises TypeError on non-ASCII str; that must not escape as a 500."""
    _invalid(KEY, token)


def test_validly_signed_but_unparsable_claims() -> None:
    import hashlib
    import hmac

    def sign(body: str) -> str:
        digest = hmac.new(KEY, body.encode(), hashlib.sha256).digest()
        return body + "." + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    _invalid(KEY, sign("not-base64-json"))
    no_exp = base64.urlsafe_b64encode(b'{"sub":"p-1"}').rstrip(b"=").decode()
    _invalid(KEY, sign(no_exp))
    str_exp = base64.urlsafe_b64encode(b'{"sub":"p-1","exp":"9999999999"}').rstrip(b"=").decode()
    _invalid(KEY, sign(str_exp))
