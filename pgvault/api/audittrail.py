"""The audit trail of the API: every write and every denied call, recorded before its answer.

A plain ASGI middleware (Starlette's `BaseHTTPMiddleware` cost a tenth of the server's time
under load) that holds the response's first message until the call's audit row is committed,
so a client that sees an answer can already find it in the audit log. Rows that arrive while a
commit is running go together in the next one (group commit): under load many writes share
one transaction and one fsync instead of queueing for SQLite's write lock one by one, and none
is dropped: each call waits for the commit that holds its row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgvault.api import actions
from pgvault.identity import Caller

log = logging.getLogger("pgvault.api")


@dataclass(frozen=True)
class Entry:
    """One audited call, as `AccessService.record_many` takes it."""

    caller: Caller | None
    action: str
    scope: str
    method: str
    status: int


def audited(method: str, path: str, status: int) -> bool:
    """Writes and denials are audited; token calls only when refused or throttled."""
    if method in ("GET", "HEAD") and status not in (401, 403):
        return False
    return not actions.is_sign_in(path) or status in (401, 429)


class GroupCommit:
    """Writes entries in batches: one writer at a time, later arrivals join the next batch."""

    def __init__(self, write: Callable[[list[Entry]], None]) -> None:
        self.write = write
        self.pending: list[tuple[Entry, asyncio.Future[None]]] = []
        self.running = False

    async def add(self, entry: Entry) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((entry, done))
        if not self.running:
            self.running = True
            asyncio.get_running_loop().create_task(self._drain())
        await done

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                try:
                    await run_in_threadpool(self.write, [entry for entry, _ in batch])
                except Exception as exc:  # each waiter fails the way a lone write would
                    for _, done in batch:
                        done.set_exception(exc)
                else:
                    for _, done in batch:
                        done.set_result(None)
        finally:
            self.running = False


class AuditTrail:
    """Record audited calls (see `audited`) before their response starts."""

    def __init__(self, app: ASGIApp, commit: GroupCommit) -> None:
        self.app = app
        self.commit = commit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]

        async def send_after_audit(message: Message) -> None:
            portal = scope.get("state", {}).get("portal")  # it records its own, as the API would
            if message["type"] == "http.response.start" and not portal:
                status = int(message["status"])
                if audited(method, path, status):
                    wanted = actions.requested(method, path)
                    caller = scope.get("state", {}).get("caller")
                    entry = Entry(caller, wanted.action, wanted.scope, method, status)
                    try:
                        await self.commit.add(entry)
                    except Exception:
                        log.exception("audit record failed")
                        raise
            await send(message)

        await self.app(scope, receive, send_after_audit)
