"""Bounded input at the edge: body size, control characters, forwarded hosts, sign-in rates.

`InputLimits` is the outermost ASGI middleware (inside Starlette's error middleware): it
refuses a request whose query values or the headers pgvault reads carry control
characters (400; path segments are names, which their own checks refuse), and counts the body's bytes as they are received, so a body over
`PGVAULT_MAX_BODY_BYTES` is refused with 413 whatever its Content-Length says (absent,
lying, or a chunked body). Nothing of such a request reaches a handler's side effects:
the handler's read fails, and its response is replaced by the 413.

`client_address` and `forwarded_base` honour X-Forwarded-* headers only from the peers
in `PGVAULT_TRUSTED_PROXIES`; `RateLimiter` bounds `/oauth2/token` per name and per
client address with a sliding window (per process). `ConcurrencyGate` lets a few reads and a few
writes run at once per process (PGVAULT_API_CONCURRENCY) and queues the rest in the event loop.
"""

from __future__ import annotations

import collections
import ipaddress
import json
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

import anyio
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgvault.errors import BadRequest, Code, PayloadTooLarge, PgVaultError, TooManyAttempts

#: The headers pgvault reads; any other header is passed through untouched.
READ_HEADERS = (
    b"authorization",
    b"content-type",
    b"content-length",
    b"transfer-encoding",
    b"x-forwarded-for",
    b"x-forwarded-host",
    b"x-forwarded-proto",
    b"x-ms-client-request-id",
)
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # every control character but TAB
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?$")


def _has_control(raw: bytes) -> bool:
    return _CONTROL.search(raw) is not None


def _query_problem(query: bytes) -> str | None:
    """The first query parameter whose name or decoded value holds a control character."""
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        for part in (name, value):
            if _has_control(unquote_to_bytes(part.replace(b"+", b" "))):
                return unquote_to_bytes(name).decode("latin-1")[:40] or "?"
    return None


async def _answer(error: PgVaultError, scope: Scope, receive: Receive, send: Send) -> None:
    await JSONResponse(status_code=error.status, content=error.to_body())(scope, receive, send)


class InputLimits:
    """Refuse oversized bodies (413) and control characters in what pgvault reads (400)."""

    def __init__(self, app: ASGIApp, max_body_bytes: Callable[[], int]) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self._check_request(scope)
        if refused is not None:
            await _answer(refused, scope, receive, send)
            return
        limit = self.max_body_bytes()
        too_large = PayloadTooLarge(
            f"The request body is larger than this service accepts ({limit} bytes).",
            code=Code.RequestBodyTooLarge,
        )
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _answer(too_large, scope, receive, send)
            return
        received = 0
        exceeded = False
        answered = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise too_large
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            if not exceeded:
                await send(message)
                return
            if not answered:  # whatever the handler answered, the answer is 413
                answered = True
                await _answer(too_large, scope, receive, send)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except PgVaultError:
            if not exceeded:
                raise
        if exceeded and not answered:
            answered = True
            await _answer(too_large, scope, receive, send)

    @staticmethod
    def _check_request(scope: Scope) -> PgVaultError | None:
        name = _query_problem(scope.get("query_string", b""))
        if name is not None:
            return BadRequest(
                f"Query parameter {name!r} contains a control character (CR, LF, NUL, ...).",
                code=Code.InvalidQueryParameterValue,
                target=name,
            )
        for key, value in scope.get("headers", ()):
            if key.lower() in READ_HEADERS and _has_control(value):
                header = key.decode("latin-1")
                return BadRequest(
                    f"Header {header!r} contains a control character (CR, LF, NUL, ...).",
                    code=Code.InvalidHeaderValue,
                    target=header,
                )
        if _content_length(scope) == -1:
            return BadRequest(
                "The Content-Length header is not a number.",
                code=Code.InvalidHeaderValue,
                target="content-length",
            )
        return None


def _content_length(scope: Scope) -> int | None:
    """The declared length (None when absent, -1 when not a number)."""
    for key, value in scope.get("headers", ()):
        if key.lower() == b"content-length":
            text = value.strip()
            return int(text) if text.isdigit() and len(text) < 20 else -1
    return None


# -- who is calling, from where -------------------------------------------------------------


def _networks(
    proxies: tuple[str, ...],
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for entry in proxies:
        try:
            nets.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue  # an unreadable entry trusts nobody
    return nets


def is_trusted(peer: str | None, proxies: tuple[str, ...]) -> bool:
    if not peer or not proxies:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in net for net in _networks(proxies))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            text: str = value.decode("latin-1")
            return text
    return None


def _peer(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def client_address(scope: Scope, proxies: tuple[str, ...]) -> str:
    """The caller's address: the peer, or the last hop a trusted proxy names."""
    peer = _peer(scope) or "unknown"
    if not is_trusted(peer, proxies):
        return peer
    hops = [h.strip() for h in (_header(scope, b"x-forwarded-for") or "").split(",") if h.strip()]
    for hop in reversed(hops):  # the nearest hop a trusted proxy did not add
        if not is_trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer


def forwarded_base(scope: Scope, proxies: tuple[str, ...]) -> str | None:
    """`proto://host` from X-Forwarded-Host/Proto, only when a trusted proxy sent them."""
    if not is_trusted(_peer(scope), proxies):
        return None
    host = (_header(scope, b"x-forwarded-host") or "").split(",")[0].strip()
    proto = (_header(scope, b"x-forwarded-proto") or "https").split(",")[0].strip().lower()
    if not host or not _HOST.fullmatch(host) or proto not in ("http", "https"):
        return None
    return f"{proto}://{host}"


def own_base(scope: Scope) -> str:
    """The address this server's socket listens on (never the client's Host header)."""
    server = scope.get("server")
    scheme = "https" if scope.get("scheme") == "https" else "http"
    if not server:
        return f"{scheme}://127.0.0.1"
    host, port = server[0], server[1]
    host = f"[{host}]" if ":" in str(host) else str(host)
    return f"{scheme}://{host}" if port is None else f"{scheme}://{host}:{port}"


# -- sign-in rate limit ---------------------------------------------------------------------


class RateLimiter:
    """At most `limit` calls per key in a sliding `window` (seconds); bounded memory.

    Keys are kept for the most recent `max_keys` callers; evicting the oldest only ever
    forgets a caller that has been quiet longest.
    """

    def __init__(
        self,
        limit: Callable[[], int],
        window: Callable[[], int],
        *,
        max_keys: int = 10000,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit, self._window, self._now = limit, window, now
        self._max_keys = max_keys
        self._calls: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def hit(self, key: str, what: str) -> None:
        """Count one call for `key`; raise 429 with the seconds to wait when over the limit."""
        limit, window, now = self._limit(), self._window(), self._now()
        with self._lock:
            calls = self._calls.pop(key, None) or collections.deque()
            while calls and calls[0] <= now - window:
                calls.popleft()
            self._calls[key] = calls
            while len(self._calls) > self._max_keys:
                self._calls.popitem(last=False)
            if len(calls) >= limit:
                wait = max(1, math.ceil(calls[0] + window - now))
                error = TooManyAttempts(
                    f"Too many sign-in requests for {what}; try again in {wait} s.",
                    code=Code.TooManyRequests,
                )
                error.retry_after = wait
                raise error
            calls.append(now)


# -- resource tags --------------------------------------------------------------------------

MAX_TAGS = 50
MAX_TAG_NAME = 512
MAX_TAG_VALUE = 256


def checked_tags(tags: dict[str, Any]) -> dict[str, Any]:
    """Azure's tag limits: at most 50 tags, names up to 512 characters, values up to 256."""
    if len(tags) > MAX_TAGS:
        raise BadRequest(
            f"A resource has at most {MAX_TAGS} tags; this request sends {len(tags)}.",
            code=Code.InvalidTag,
            target="tags",
        )
    for name, value in tags.items():
        text = value if isinstance(value, str) else json.dumps(value)
        if not name or len(name) > MAX_TAG_NAME or _has_control(name.encode()):
            raise BadRequest(
                f"Tag name {name[:40]!r}... is empty, longer than {MAX_TAG_NAME} characters or "
                "holds a control character."
                if len(name) > 40
                else f"Tag name {name!r} is empty, longer than {MAX_TAG_NAME} characters or "
                "holds a control character.",
                code=Code.InvalidTag,
                target="tags",
            )
        if len(text) > MAX_TAG_VALUE:
            raise BadRequest(
                f"The value of tag {name!r} is longer than {MAX_TAG_VALUE} characters.",
                code=Code.InvalidTag,
                target=f"tags.{name}",
            )
    return tags


class ConcurrencyGate:
    """At most `slots` reads (GET/HEAD) and `slots` other calls inside the application at once
    per process; the others wait here, in the event loop, in arrival order.

    Measured under load (benchmarks/api_load.py, 200 clients): eight threads each running a
    call spend their time handing the GIL to each other, every metadata round trip a hand-off;
    two at a time serve more calls per second at less CPU per call. Reads and the rest have
    a lane each, so a slow write or action (a validation reaching a server, a webhook test)
    never holds a read's place, and a flood of reads never starves the writes. Health probes
    pass ungated.
    """

    UNGATED = ("/healthz", "/readyz")

    def __init__(self, app: ASGIApp, slots: int) -> None:
        self.app = app
        self.slots = slots
        self._lanes: dict[bool, anyio.CapacityLimiter] = {}

    def _lane(self, read: bool) -> anyio.CapacityLimiter:
        lane = self._lanes.get(read)
        if lane is None:  # made in the event loop that serves the requests
            lane = self._lanes[read] = anyio.CapacityLimiter(self.slots)
        return lane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.UNGATED:
            await self.app(scope, receive, send)
            return
        async with self._lane(scope["method"] in ("GET", "HEAD")):
            await self.app(scope, receive, send)
