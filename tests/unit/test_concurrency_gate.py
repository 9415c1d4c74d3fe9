"""The API's concurrency gate: a few reads and a few writes inside the app at once per process,
each in its own lane, health probes never queued (pgvault.api.limits.ConcurrencyGate).

Driven with a bare ASGI app whose reads block until released, so what the gate lets in is
observed directly, without timing."""

from __future__ import annotations

import anyio
import pytest
from starlette.types import Message, Receive, Scope, Send

from pgvault.api.limits import ConcurrencyGate

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Held:
    """An app whose calls to /hold wait for `release` (counted: how many were inside at
    once); everything else answers at once."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.inside = 0
        self.most = 0
        self.answered: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/hold":
            self.inside += 1
            self.most = max(self.most, self.inside)
            try:
                await self.release.wait()
            finally:
                self.inside -= 1
        self.answered.append(f"{scope['method']} {scope['path']}")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _call(app: ConcurrencyGate, method: str, path: str) -> None:
    scope = {"type": "http", "method": method, "path": path, "headers": []}

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_: Message) -> None:
        return None

    await app(scope, receive, send)


async def test_reads_queue_past_their_slots_while_writes_and_probes_pass() -> None:
    inner = Held()
    gate = ConcurrencyGate(inner, slots=2)
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(_call, gate, "GET", "/hold")
        await anyio.wait_all_tasks_blocked()
        assert inner.inside == 2  # two reads inside, three waiting at the gate

        await _call(gate, "POST", "/write")  # the writes' lane is free
        await _call(gate, "GET", "/healthz")  # probes are never queued
        assert inner.answered == ["POST /write", "GET /healthz"]

        inner.release.set()
    assert inner.answered.count("GET /hold") == 5
    assert inner.most == 2


async def test_writes_have_their_own_lane() -> None:
    inner = Held()
    gate = ConcurrencyGate(inner, slots=1)
    async with anyio.create_task_group() as tg:
        for method in ("PUT", "PUT", "PATCH"):
            tg.start_soon(_call, gate, method, "/hold")
        await anyio.wait_all_tasks_blocked()
        assert inner.inside == 1
        await _call(gate, "GET", "/read")  # a read passes the held writes
        assert inner.answered == ["GET /read"]
        inner.release.set()
    assert inner.most == 1
    assert len(inner.answered) == 4
