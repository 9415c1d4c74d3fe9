"""The FastAPI application: routers, authentication, error bodies and the worker pool's life."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgvault import __version__, executors, logs, observability
from pgvault.api import (
    access,
    actions,
    audittrail,
    crossregion,
    dataprotection,
    graph,
    keyvault,
    limits,
    resourcegraph,
    resources,
    signin,
)
from pgvault.api.deps import Auth, error_response
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
        "validateForModifyBackup",
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
        "notificationSettings",
        "Microsoft.ResourceGraph",
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


class RequestId:
    """A request id per call, in the log context and echoed as `x-ms-request-id` (as ARM does).

    A client's `x-ms-client-request-id` is used instead when it is a short plain token, and
    echoed back under its own name, so a client can find its call in the service log.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = None
        for name, value in scope.get("headers", []):
            if name == b"x-ms-client-request-id":
                sent = logs.client_request_id(value.decode("latin-1"))
                break
        rid = sent or str(uuid.uuid4())
        extra = [(b"x-ms-request-id", rid.encode())]
        if sent is not None:
            extra.append((b"x-ms-client-request-id", sent.encode()))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        token = logs.request_id.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            logs.request_id.reset(token)


def _executor(ctx: Context, run_jobs: bool) -> executors.Executor:
    """The embedded pool, or the procrastinate seam (jobs run by `pgvault worker`)."""
    if executors.uses_procrastinate(ctx.settings):
        return executors.RemoteExecutor(ctx)
    if not run_jobs:
        return executors.NoExecutor()
    return WorkerPool(ctx, ctx.settings.workers)


def create_app(
    ctx: Context, *, start_workers: bool = True, run_jobs: bool = True, schedule: bool = True
) -> FastAPI:
    """The API over one service; its executor and scheduler start and stop with the app.

    `start_workers=False`: no background thread at all (tests). `run_jobs=False`
    (`serve --no-worker`): the scheduler queues, other processes run the jobs.
    `schedule=False` (the other processes of `serve --api-processes N`): no scheduler or
    housekeeping here; the first process runs them.
    """
    pool = _executor(ctx, run_jobs) if start_workers else None
    service = Service(ctx, pool)
    scheduler = (
        Scheduler(ctx, ctx.settings.scheduler_seconds, notify=pool.notify)
        if pool and schedule
        else None
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Sync routes run in AnyIO's thread pool (40 threads by default). Under load they all
        # contend for the GIL (each SQLite call releases it): fewer threads, less convoy.
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = ctx.settings.api_threads
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
    app.state.metrics = observability.registry(ctx)
    app.include_router(access.router)
    app.include_router(signin.router)
    app.include_router(resourcegraph.router)
    app.include_router(keyvault.router)
    app.include_router(graph.router)
    app.include_router(resources.router)
    app.include_router(dataprotection.router)
    app.include_router(crossregion.router)

    @app.exception_handler(PgVaultError)
    async def _pgvault_error(_: Request, exc: PgVaultError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(keyvault.Challenge)
    async def _keyvault_challenge(request: Request, exc: keyvault.Challenge) -> JSONResponse:
        return keyvault.challenge_response(request, exc)

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

    @app.get("/readyz")
    def readyz(request: Request) -> JSONResponse:
        """200 when the metadata database answers and the datastore is reachable, else 503."""
        checks = observability.readiness(ctx)
        started = bool(request.app.state.ready)
        ready = started and all(v == "ok" for v in checks.values())
        body = {"status": "ready" if ready else "not ready", "checks": checks}
        if not started:
            body["checks"] = {**checks, "service": "starting"}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get(actions.METRICS_PATH)
    def metrics(request: Request, _: Auth) -> Response:
        """Prometheus metrics, read from the metadata database now (Reader at `/`)."""
        return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)

    def write_audit(entries: list[audittrail.Entry]) -> None:
        service.access.record_many(
            [(e.caller, e.action, e.scope, e.method, e.status, None) for e in entries]
        )

    # innermost: a read waits for its turn before any handler work, holds it only while it runs
    app.add_middleware(limits.ConcurrencyGate, slots=ctx.settings.api_concurrency)
    app.add_middleware(audittrail.AuditTrail, commit=audittrail.GroupCommit(write_audit))
    app.add_middleware(CanonicalPath)
    if ctx.settings.keyvault_dns_suffix:  # before CanonicalPath: a key vault's host → its path
        app.add_middleware(keyvault.KeyVaultHost, suffix=ctx.settings.keyvault_dns_suffix)
    app.add_middleware(RequestId)
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
