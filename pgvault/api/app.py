"""The FastAPI application: routers, authentication, error bodies and the worker pool's life."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import RequestResponseEndpoint
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgvault import __version__
from pgvault.api import access, actions, dataprotection, limits, resources
from pgvault.api.deps import error_response
from pgvault.context import Context
from pgvault.errors import BadRequest, Code, PgVaultError
from pgvault.scheduler import Scheduler
from pgvault.schemas import base as schemas
from pgvault.services import Service
from pgvault.workers import WorkerPool

log = logging.getLogger("pgvault.api")

_CANONICAL = {
    s.lower(): s
    for s in (
        "subscriptions",
        "resourceGroups",
        "providers",
        "Microsoft.DataProtection",
        "Microsoft.DBforPostgreSQL",
        "Microsoft.KeyVault",
        "Microsoft.Storage",
        "backupVaults",
        "backupPolicies",
        "backupInstances",
        "recoveryPoints",
        "backupJobs",
        "operationStatus",
        "operationResults",
        "storageAccounts",
        "blobServices",
        "validateForBackup",
        "validateRestore",
        "deletedBackupInstances",
        "rehydrate",
        "stopProtection",
        "suspendBackups",
        "resumeProtection",
        "resumeBackups",
        "vaults",
        "servers",
        "secrets",
        "containers",
        "databases",
        "locations",
        "Microsoft.Authorization",
        "roleAssignments",
        "roleDefinitions",
        "Microsoft.Insights",
    )
}


class CanonicalPath:
    """ARM paths are case-insensitive: rewrite fixed segments to the casing routes use."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            parts = [p for p in scope["path"].split("/") if p]  # also collapses '//'
            fixed = "/" + "/".join(_CANONICAL.get(p.lower(), p) for p in parts)
            if fixed != scope["path"]:
                scope = dict(scope, path=fixed, raw_path=fixed.encode())
        await self.app(scope, receive, send)


class StrictTransportSecurity:
    """HSTS on every response (added only when the service speaks https)."""

    HEADER = (b"strict-transport-security", b"max-age=31536000")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != self.HEADER[0]]
                message = {**message, "headers": [*headers, self.HEADER]}
            await send(message)

        await self.app(scope, receive, send_with_hsts)


def create_app(ctx: Context, *, start_workers: bool = True) -> FastAPI:
    """The API over one service; the worker pool starts and stops with the app."""
    pool = WorkerPool(ctx, ctx.settings.workers) if start_workers else None
    service = Service(ctx, pool)
    scheduler = Scheduler(ctx, ctx.settings.scheduler_seconds, notify=pool.notify) if pool else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        note = service.bootstrap()
        if note:
            log.warning(note)
        if pool is not None:
            pool.start()
        if scheduler is not None:
            scheduler.start()
        app.state.ready = True
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.stop()
            if pool is not None:
                pool.stop()

    app = FastAPI(title="pgvault", version=__version__, lifespan=lifespan)
    app.state.service = service
    app.state.ready = False
    app.include_router(access.router)
    app.include_router(resources.router)
    app.include_router(dataprotection.router)

    @app.exception_handler(PgVaultError)
    async def _pgvault_error(_: Request, exc: PgVaultError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = tuple(first.get("loc", ()))
        if loc[:1] == ("body",):  # a request body: name the field as the body spells it
            return error_response(schemas.bad_request(errors, skip=1))
        where = ".".join(str(p) for p in loc)
        return error_response(
            BadRequest(
                f"Invalid request: {where}: {first.get('msg', 'invalid value')}",
                code=Code.InvalidRequestContent,
                target=where,
            )
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: Code.NoRegisteredProviderFound, 405: Code.MethodNotAllowed}.get(
            exc.status_code, Code.BadRequest
        )
        error = PgVaultError(f"{exc.detail}: no such API path or method.", code=code)
        error.status = exc.status_code
        return error_response(error)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        response = error_response(
            PgVaultError(
                f"Internal error ({type(exc).__name__}); see the service log.",
                code=Code.InternalError,
            )
        )
        if ctx.settings.tls:  # answered outside the middleware stack: HSTS set here
            name, value = StrictTransportSecurity.HEADER
            response.headers[name.decode()] = value.decode()
        return response

    @app.get("/healthz")
    def healthz(request: Request) -> JSONResponse:
        ready = bool(request.app.state.ready)
        return JSONResponse(
            {"status": "ok" if ready else "starting", "version": __version__},
            status_code=200 if ready else 503,
        )

    @app.middleware("http")
    async def _audit(request: Request, call_next: RequestResponseEndpoint) -> Response:
        """Record every write and every denied call, after the fact."""
        response = await call_next(request)
        status = response.status_code
        if request.method not in ("GET", "HEAD") or status in (401, 403):
            path = request.url.path
            if not path.startswith("/oauth2/") or status in (401, 429):
                wanted = actions.requested(request.method, path)
                who = getattr(request.state, "caller", None)
                await run_in_threadpool(
                    service.access.record,
                    who,
                    wanted.action,
                    wanted.scope,
                    request.method,
                    status,
                    None,
                )
        return response

    app.add_middleware(CanonicalPath)
    settings = ctx.settings
    app.add_middleware(limits.InputLimits, max_body_bytes=lambda: settings.max_body_bytes)
    app.state.token_rate_by_name = limits.RateLimiter(
        lambda: settings.token_rate_per_name, lambda: settings.token_rate_window_seconds
    )
    app.state.token_rate_by_address = limits.RateLimiter(
        lambda: settings.token_rate_per_address, lambda: settings.token_rate_window_seconds
    )
    if ctx.settings.tls:
        app.add_middleware(StrictTransportSecurity)  # outermost: errors answered early get it too
    return app
