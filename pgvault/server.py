"""The composition root of `pgvault serve`: settings, context, the API app, uvicorn.

Kept out of `pgvault.cli` (a client of the REST API, like `az`): the CLI imports this
module only when `serve` runs, so the other commands never load the server stack.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
from collections.abc import Callable

import uvicorn

from pgvault.api.app import create_app
from pgvault.config import Settings
from pgvault.context import Context


def _limit_malloc_arenas() -> None:
    """Cap glibc's per-thread malloc arenas: many threads otherwise keep RSS high after a job."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX


def serve(host: str, port: int, workers: int | None, say: Callable[[str], None]) -> None:
    """Run the REST API and the in-process workers until interrupted."""
    _limit_malloc_arenas()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    public = os.environ.get("PGVAULT_PUBLIC_URL") or f"http://{host}:{port}"
    settings = Settings.from_env(public_url=public, workers=workers)
    ctx = Context.create(settings)
    say(f"pgvault serving on http://{host}:{port} (home: {settings.home})")
    say("Get a bearer token with: pgvault auth token")
    # X-Forwarded-* are honoured by pgvault itself, only from PGVAULT_TRUSTED_PROXIES
    uvicorn.run(create_app(ctx), host=host, port=port, log_level="info", proxy_headers=False)
