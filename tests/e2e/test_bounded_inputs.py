"""Issue 8, findings 5 and 6, against a real `pgvault serve`: bounded input, sign-in limits.

The attacks as reported: a 30 MB vault tag (stored), CR/LF in `api-version` (dropped
connection, traceback), twenty parallel wrong passwords (nineteen argon2 checks), unknown
names that skip the lockout, and a token endpoint without a rate limit. Each is now
refused with a code, and the server stays healthy.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import HOST, PgvaultServer
from tests.support.pg import free_port

REGION = "eastus"
MAX_FAILURES = 5


def _vault_path(srv: PgvaultServer, name: str) -> str:
    return (
        f"/subscriptions/{srv.subscription()}/resourceGroups/default/providers/"
        f"Microsoft.DataProtection/backupVaults/{name}"
    )


def _code(resp: httpx.Response) -> str:
    code: str = resp.json()["error"]["code"]
    return code


def _healthy(srv: PgvaultServer) -> None:
    assert httpx.get(f"{srv.url}/healthz", timeout=10).status_code == 200
    assert "Traceback" not in srv.log()


def test_a_30_mb_tag_is_refused_and_nothing_is_stored(pgvault_server: PgvaultServer) -> None:
    srv = pgvault_server
    token, path = srv.token(), _vault_path(srv, "big")
    body = {"location": REGION, "tags": {"t": "x" * (30 << 20)}}
    resp = srv.api("PUT", path, token=token, json=body)
    assert resp.status_code == 413, resp.text[:300]
    assert _code(resp) == "RequestBodyTooLarge"
    assert srv.api("GET", path, token=token).status_code == 404
    _healthy(srv)


def test_a_chunked_body_without_length_is_counted_and_refused(
    pgvault_server: PgvaultServer,
) -> None:
    srv = pgvault_server
    token, path = srv.token(), _vault_path(srv, "chunked")
    piece = b'{"location": "eastus", "tags": {"t": "' + b"y" * (64 << 10)

    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        yield piece
        for _ in range(40):  # 2.5 MiB in all
            yield b"y" * (64 << 10)
        yield b'"}}'

    resp = srv.api(
        "PUT", path, token=token, content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 413, resp.text[:300]
    assert _code(resp) == "RequestBodyTooLarge"
    assert srv.api("GET", path, token=token).status_code == 404
    _healthy(srv)


def test_tags_are_bounded_like_azure(pgvault_server: PgvaultServer) -> None:
    srv = pgvault_server
    token, path = srv.token(), _vault_path(srv, "tagged")
    for tags in (
        {f"k{i}": "v" for i in range(51)},
        {"n" * 513: "v"},
        {"k": "v" * 257},
    ):
        resp = srv.api("PUT", path, token=token, json={"location": REGION, "tags": tags})
        assert resp.status_code == 400, resp.text[:300]
        assert _code(resp) == "InvalidTag"
    assert srv.api("GET", path, token=token).status_code == 404
    ok = {f"k{i}": "v" * 256 for i in range(49)} | {"n" * 512: "v"}
    resp = srv.api("PUT", path, token=token, json={"location": REGION, "tags": ok})
    assert resp.status_code in (200, 201), resp.text[:300]
    assert len(resp.json()["tags"]) == 50


def _raw(srv: PgvaultServer, request: bytes) -> tuple[int, bytes]:
    """Send a raw HTTP/1.1 request; the status and the whole answer (connection closed)."""
    with socket.create_connection((HOST, srv.port), timeout=30) as conn:
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 "), data[:200]
    return int(data[9:12]), data


def test_crlf_in_api_version_is_a_400_with_a_json_error(pgvault_server: PgvaultServer) -> None:
    srv = pgvault_server
    token, path = srv.token(), _vault_path(srv, "v1")
    assert srv.cli_json("vault", "create", "--name", "v1", "--region", REGION)["name"] == "v1"
    for query in ("api-version=2025-07-01%0D%0AX-Evil:%20yes", "api-version=%00", "x=%0A"):
        status, answer = _raw(
            srv,
            f"GET {path}?{query} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\n"
            "Connection: close\r\n\r\n".encode(),
        )
        assert status == 400, answer[:500]
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"X-Evil" not in head
        assert b'"code":"InvalidQueryParameterValue"' in body
    # A POST that would answer with LRO headers is refused the same way, before it runs.
    resp = httpx.post(
        f"{srv.url}{path}/backupInstances/none/backup?api-version=x%0d%0aSet-Cookie:%20a=b",
        headers={"Authorization": f"Bearer {token}"},
        json={},
        timeout=30,
    )
    assert resp.status_code == 400
    assert _code(resp) == "InvalidQueryParameterValue"
    _healthy(srv)


def _token_call(srv: PgvaultServer, username: str, password: str) -> httpx.Response:
    return httpx.post(
        f"{srv.url}/oauth2/token",
        data={"grant_type": "password", "username": username, "password": password},
        timeout=60,
    )


def _denied_sign_ins(srv: PgvaultServer, status: int) -> int:
    """How many sign-ins the audit log recorded with `status` (coalesced rows count many)."""
    resp = srv.api(
        "GET",
        f"/subscriptions/{srv.subscription()}/providers/Microsoft.Insights/eventtypes/"
        "management/values",
        token=srv.token(),
        params={"$top": "1000"},
    )
    assert resp.status_code == 200, resp.text
    return sum(
        int(e["properties"]["count"])
        for e in resp.json()["value"]
        if e["resourceId"].startswith("/oauth2") and e["properties"]["statusCode"] == str(status)
    )


def test_parallel_wrong_passwords_get_at_most_five_checks(pgvault_server: PgvaultServer) -> None:
    srv = pgvault_server
    alice = srv.cli_json("principal", "create", "--name", "alice", "--type", "user")
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: _token_call(srv, "alice", "wrong"), range(20)))
    statuses = sorted(r.status_code for r in answers)
    checked = statuses.count(401)  # a 401 is a password check that ran; a 429 never ran one
    assert 1 <= checked <= MAX_FAILURES, statuses
    assert statuses.count(429) == 20 - checked, statuses
    refused = [r for r in answers if r.status_code == 429]
    assert all(_code(r) == "TooManyFailedLogins" for r in refused)
    assert all(int(r.headers["Retry-After"]) > 0 for r in refused)
    assert _denied_sign_ins(srv, 401) == checked
    # Locked out: even the right password waits.
    right = _token_call(srv, "alice", alice["secret"])
    assert right.status_code == 429, right.text


def test_unknown_names_are_locked_out_after_the_same_count(pgvault_server: PgvaultServer) -> None:
    srv = pgvault_server
    statuses = [
        _token_call(srv, "nobody", f"guess{i}").status_code for i in range(MAX_FAILURES + 2)
    ]
    assert statuses == [401] * MAX_FAILURES + [429, 429]
    srv.cli_json("principal", "create", "--name", "somebody", "--type", "user")
    known = [_token_call(srv, "somebody", f"guess{i}").status_code for i in range(MAX_FAILURES + 2)]
    assert known == statuses


@pytest.fixture
def rate_limited_server(request: pytest.FixtureRequest) -> Iterator[PgvaultServer]:
    """A server whose token endpoint allows 3 calls per name and 8 per address a minute."""
    base = Path(tempfile.mkdtemp(prefix="pgvault-e2e-rate-"))
    (base / "home").mkdir()
    srv = PgvaultServer(base / "home", free_port(), base / "serve.log")
    srv.env.update({"PGVAULT_TOKEN_RATE_PER_NAME": "3", "PGVAULT_TOKEN_RATE_PER_ADDRESS": "8"})
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


def test_token_endpoint_is_rate_limited_per_name_and_per_address(
    rate_limited_server: PgvaultServer,
) -> None:
    srv = rate_limited_server
    by_name = [_token_call(srv, "bob", f"g{i}") for i in range(4)]
    assert [r.status_code for r in by_name] == [401, 401, 401, 429]
    assert _code(by_name[-1]) == "TooManyRequests"
    assert 1 <= int(by_name[-1].headers["Retry-After"]) <= 60
    # Other names from the same address: 4 more calls reach the address's 8, then 429.
    by_address = [_token_call(srv, f"carol{i}", "g") for i in range(5)]
    assert [r.status_code for r in by_address] == [401, 401, 401, 401, 429]
    assert _code(by_address[-1]) == "TooManyRequests"
    assert int(by_address[-1].headers["Retry-After"]) >= 1
    # A spoofed X-Forwarded-For does not buy a fresh address (no trusted proxies configured).
    spoofed = httpx.post(
        f"{srv.url}/oauth2/token",
        data={"grant_type": "password", "username": "dave", "password": "g"},
        headers={"X-Forwarded-For": "203.0.113.9"},
        timeout=60,
    )
    assert spoofed.status_code == 429
    _healthy(srv)
