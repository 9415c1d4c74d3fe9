"""The edge's limits in isolation: body counting, control characters, forwarded hosts, rates."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

from pgvault.api import limits
from pgvault.errors import BadRequest, PayloadTooLarge, TooManyAttempts

LIMIT = 1000


def _scope(
    headers: list[tuple[bytes, bytes]] | None = None,
    query: bytes = b"",
    client: tuple[str, int] = ("127.0.0.1", 5000),
) -> Scope:
    return {
        "type": "http",
        "method": "PUT",
        "path": "/x",
        "query_string": query,
        "headers": headers or [],
        "client": client,
        "server": ("127.0.0.1", 8080),
        "scheme": "http",
    }


class _Echo:
    """An app that reads the whole body, then answers 201 with its length (a 'stored' body)."""

    def __init__(self) -> None:
        self.stored: list[int] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        try:
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
        except PayloadTooLarge as exc:  # what a handler's read raises
            await send({"type": "http.response.start", "status": 500, "headers": []})
            await send({"type": "http.response.body", "body": str(exc).encode()})
            return
        self.stored.append(len(body))
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def _run(scope: Scope, chunks: list[bytes]) -> tuple[int, dict[str, Any], _Echo]:
    app = _Echo()
    middleware = limits.InputLimits(app, max_body_bytes=lambda: LIMIT)
    pending = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1, sent
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return starts[0]["status"], json.loads(body or b"{}"), app


def test_a_body_within_the_limit_passes() -> None:
    status, _, app = _run(_scope(), [b"a" * 400, b"b" * 400])
    assert status == 201
    assert app.stored == [800]


@pytest.mark.parametrize(
    "headers",
    [
        [],  # no Content-Length (a chunked body)
        [(b"content-length", b"10")],  # a Content-Length that lies
    ],
)
def test_an_oversized_body_is_refused_while_read(headers: list[tuple[bytes, bytes]]) -> None:
    status, body, app = _run(_scope(headers), [b"a" * 600, b"b" * 600, b"c" * 600])
    assert status == 413
    assert body["error"]["code"] == "RequestBodyTooLarge"
    assert app.stored == []


def test_a_declared_oversized_body_is_refused_before_reading() -> None:
    status, body, app = _run(_scope([(b"content-length", b"5000000")]), [b"x"])
    assert (status, body["error"]["code"], app.stored) == (413, "RequestBodyTooLarge", [])
    status, body, _ = _run(_scope([(b"content-length", b"12abc")]), [b"x"])
    assert (status, body["error"]["code"]) == (400, "InvalidHeaderValue")


@settings(max_examples=60, deadline=None)
@given(value=st.text(min_size=1, max_size=8).filter(lambda v: any(ord(c) < 32 for c in v)))
def test_control_characters_in_query_values_are_400(value: str) -> None:
    if all(c == "\t" for c in value if ord(c) < 32):
        return  # TAB alone is allowed
    status, body, app = _run(_scope(query=b"api-version=" + quote(value).encode()), [b""])
    assert status == 400
    assert body["error"]["code"] == "InvalidQueryParameterValue"
    assert app.stored == []


def test_control_characters_in_read_headers_are_400_others_pass() -> None:
    status, body, _ = _run(_scope([(b"authorization", b"Bearer a\x00b")]), [b""])
    assert (status, body["error"]["code"]) == (400, "InvalidHeaderValue")
    status, _, _ = _run(_scope([(b"x-unrelated", b"a\x01b")]), [b""])
    assert status == 201


TRUSTED = ("10.0.0.0/8",)


def test_forwarded_host_only_from_trusted_proxies() -> None:
    fwd = [(b"x-forwarded-host", b"vault.example.com"), (b"x-forwarded-proto", b"https")]
    assert limits.forwarded_base(_scope(fwd, client=("10.1.2.3", 1)), TRUSTED) == (
        "https://vault.example.com"
    )
    assert limits.forwarded_base(_scope(fwd, client=("127.0.0.1", 1)), TRUSTED) is None
    assert limits.forwarded_base(_scope(fwd, client=("10.1.2.3", 1)), ()) is None
    bad = [(b"x-forwarded-host", b"evil.example/path?x")]
    assert limits.forwarded_base(_scope(bad, client=("10.1.2.3", 1)), TRUSTED) is None
    assert limits.own_base(_scope(fwd)) == "http://127.0.0.1:8080"


def test_client_address_trusts_forwarded_for_only_from_proxies() -> None:
    fwd = [(b"x-forwarded-for", b"203.0.113.7, 10.0.0.2")]
    assert limits.client_address(_scope(fwd, client=("10.0.0.1", 1)), TRUSTED) == "203.0.113.7"
    assert limits.client_address(_scope(fwd, client=("192.0.2.1", 1)), TRUSTED) == "192.0.2.1"


def test_rate_limiter_window_and_retry_after() -> None:
    now = [1000.0]
    limiter = limits.RateLimiter(lambda: 3, lambda: 60, max_keys=2, now=lambda: now[0])
    for _ in range(3):
        limiter.hit("a", "a")
        now[0] += 1
    with pytest.raises(TooManyAttempts) as refused:
        limiter.hit("a", "a")
    assert refused.value.retry_after == 57
    now[0] += 58
    limiter.hit("a", "a")  # the oldest call left the window
    limiter.hit("b", "b")
    limiter.hit("c", "c")  # evicts the quietest key: memory stays bounded
    assert len(limiter._calls) == 2


def test_tags_are_bounded() -> None:
    assert limits.checked_tags({"k": "v" * 256}) == {"k": "v" * 256}
    for tags in ({str(i): "" for i in range(51)}, {"k" * 513: ""}, {"k": "v" * 257}, {"": "v"}):
        with pytest.raises(BadRequest) as refused:
            limits.checked_tags(tags)
        assert refused.value.code == "InvalidTag"
