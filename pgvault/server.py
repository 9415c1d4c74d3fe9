"""The composition root of `pgvault serve`: settings, context, the API app, uvicorn.

Kept out of `pgvault.cli` (a client of the REST API, like `az`): the CLI imports this
module only when `serve` runs, so the other commands never load the server stack.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import ipaddress
import os
import ssl
import stat
from collections.abc import Callable
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from pgvault import executors, logs
from pgvault.api.app import create_app
from pgvault.config import Settings
from pgvault.context import Context
from pgvault.errors import Code, PgVaultError
from pgvault.portal import mount as mount_portal
from pgvault.services import Service

#: TLS 1.2 suites offered (TLS 1.3 suites are OpenSSL's, all strong); forward secret, AEAD only.
TLS_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def _limit_malloc_arenas() -> None:
    """Cap glibc's per-thread malloc arenas: many threads otherwise keep RSS high after a job."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX


def check_tls(cert: Path | None, key: Path | None) -> None:
    """Refuse to start on a half, unreadable, mismatched or exposed TLS configuration.

    Both files or neither; the key file open to nobody but its owner (no group or other
    permission bits, like ssh's private keys); the pair must load into a server context.
    """
    if cert is None and key is None:
        return
    if cert is None or key is None:
        missing = "--tls-cert (PGVAULT_TLS_CERT)" if cert is None else "--tls-key (PGVAULT_TLS_KEY)"
        raise PgVaultError(
            f"TLS needs a certificate and its key: {missing} is not set.",
            code=Code.TlsSettingsInvalid,
        )
    for what, path in (("certificate", cert), ("key", key)):
        if not path.is_file():
            raise PgVaultError(
                f"The TLS {what} file {path} does not exist or is not a file.",
                code=Code.TlsSettingsInvalid,
            )
    mode = stat.S_IMODE(key.stat().st_mode)
    if mode & 0o077:
        raise PgVaultError(
            f"The TLS key file {key} is open to other users (mode {mode:04o}); "
            "pgvault will not serve with a private key others may read.",
            code=Code.TlsKeyFileTooOpen,
            recommended_action=f"Make it readable by its owner only: chmod 600 {key}",
        )
    try:
        # A passphrase-protected key fails here instead of prompting on the terminal.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password=lambda: "")
    except (OSError, ssl.SSLError) as exc:  # ssl.SSLError is an OSError; named for the reader
        reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
        raise PgVaultError(
            f"The TLS certificate {cert} and key {key} cannot be used: {reason}.",
            code=Code.TlsSettingsInvalid,
        ) from None


def app_with_portal(
    ctx: Context, *, start_workers: bool = True, run_jobs: bool = True, schedule: bool = True
) -> FastAPI:
    """The API's app with the web portal mounted at `/` (the API keeps its paths)."""
    app = create_app(ctx, start_workers=start_workers, run_jobs=run_jobs, schedule=schedule)
    mount_portal(app)
    return app


#: `serve --no-worker`, passed to the API processes uvicorn starts (they read only the env).
_RUN_JOBS_ENV = "PGVAULT_SERVE_RUN_JOBS"
#: The lock file whose holder is the first API process (kept open for the process's life).
_PRIMARY_LOCK: list[int] = []


def _take_primary(home: Path) -> bool:
    """Whether this API process is the one that runs the executor and scheduler: the holder
    of an exclusive lock on `home/serve.lock`. The kernel frees it when the process ends, so
    the process uvicorn starts in place of a dead first one takes over."""
    fd = os.open(home / "serve.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    _PRIMARY_LOCK.append(fd)
    return True


def process_app() -> FastAPI:
    """uvicorn's app factory in each process of `serve --api-processes N` (N > 1).

    Each process builds its own context from the environment `serve` prepared. One of them
    (the lock holder) runs the embedded workers, scheduler and housekeeping; the others
    only answer calls: a job they queue is claimed by the first's pool within a second
    (it polls), or by `pgvault worker`s under the procrastinate executor.
    """
    settings = Settings.from_env()
    _limit_malloc_arenas()
    logs.configure(settings.log_format)
    ctx = Context.create(settings)
    run_jobs = os.environ.get(_RUN_JOBS_ENV) != "0"
    if _take_primary(settings.home):
        return app_with_portal(ctx, run_jobs=run_jobs)
    return app_with_portal(ctx, run_jobs=False, schedule=False)


def _prepare_processes(settings: Settings, run_jobs: bool, say: Callable[[str], None]) -> None:
    """Before uvicorn starts N processes: put the resolved settings the command line gave
    into the environment they read, and migrate and bootstrap once (not N times at once)."""
    os.environ["PGVAULT_HOME"] = str(settings.home)
    os.environ["PGVAULT_WORKERS"] = str(settings.workers)
    os.environ["PGVAULT_PUBLIC_URL"] = str(settings.public_url)
    for name, path in (
        ("PGVAULT_TLS_CERT", settings.tls_cert),
        ("PGVAULT_TLS_KEY", settings.tls_key),
    ):
        if path is not None:
            os.environ[name] = str(path)
    os.environ[_RUN_JOBS_ENV] = "1" if run_jobs else "0"
    ctx = Context.create(settings)
    try:
        note = Service(ctx, None).bootstrap()
    finally:
        ctx.db.dispose()  # no connection outlives this process's setup
    if note:
        say(note)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(
    host: str,
    port: int,
    workers: int | None,
    say: Callable[[str], None],
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    run_jobs: bool = True,
    api_processes: int | None = None,
) -> None:
    """Run the REST API and the in-process workers until interrupted (`run_jobs=False`,
    `--no-worker`: API, portal and scheduler only; `pgvault worker`s run the jobs).
    `api_processes` > 1: that many uvicorn processes on one socket (`process_app`).

    TLS comes from the arguments (`--tls-cert`/`--tls-key`), else PGVAULT_TLS_CERT and
    PGVAULT_TLS_KEY; with it the service speaks https only, sends HSTS, and its public URL
    defaults to https://HOST:PORT. A bad TLS setup raises `PgVaultError` before any state
    is touched.
    """
    settings = Settings.from_env(
        workers=workers, tls_cert=tls_cert, tls_key=tls_key, api_processes=api_processes
    )

    check_tls(settings.tls_cert, settings.tls_key)
    _check_executor(settings)
    scheme = "https" if settings.tls else "http"
    if settings.public_url is None:
        settings = dataclasses.replace(settings, public_url=f"{scheme}://{host}:{port}")
    _limit_malloc_arenas()
    logs.configure(settings.log_format)
    processes = settings.api_processes
    app: FastAPI | str
    if processes > 1:
        _prepare_processes(settings, run_jobs, say)
        app = "pgvault.server:process_app"
    else:
        app = app_with_portal(Context.create(settings), run_jobs=run_jobs)
    say(f"pgvault serving on {scheme}://{host}:{port} (home: {settings.home})")
    if settings.tls and str(settings.public_url).startswith("http:"):
        say(f"warning: PGVAULT_PUBLIC_URL is {settings.public_url}; clients will be sent to http")
    if not settings.tls and not _is_loopback(host):
        say(
            "warning: plain http on a network address: tokens cross the network in clear; "
            "serve with --tls-cert FILE --tls-key FILE"
        )
    say("Get a bearer token with: pgvault auth token")
    say(f"Portal: {scheme}://{host}:{port}/ (sign in with a user or service principal)")
    uvicorn.run(
        app,
        factory=processes > 1,
        workers=processes if processes > 1 else None,
        host=host,
        port=port,
        log_level="info",
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
        ssl_ciphers=TLS_CIPHERS,  # used only with a certificate
        # X-Forwarded-* are honoured by pgvault itself, only from PGVAULT_TRUSTED_PROXIES
        proxy_headers=False,
        # JSON logs: uvicorn's own loggers propagate to the root handler logs.configure set
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
    )


def _check_executor(settings: Settings) -> bool:
    """Whether the procrastinate executor is chosen; refused (before any state is touched)
    on SQLite metadata."""
    try:
        return executors.uses_procrastinate(settings)
    except ValueError as exc:
        raise PgVaultError(str(exc), code=Code.WorkerSettingsInvalid) from None


def worker(concurrency: int | None, say: Callable[[str], None]) -> None:
    """`pgvault worker`: run jobs from the Procrastinate queue until SIGINT/SIGTERM.

    Needs PostgreSQL metadata and PGVAULT_EXECUTOR=procrastinate, and the same master key
    (PGVAULT_MASTER_KEY or PGVAULT_HOME/keys) and datastores as `pgvault serve`. The schema
    is brought up to date first (idempotent; Alembic serialises concurrent upgrades).
    """
    from pgvault import procworker

    settings = Settings.from_env()
    if not _check_executor(settings):
        raise PgVaultError(
            "`pgvault worker` runs jobs of the procrastinate executor; PGVAULT_EXECUTOR is "
            f"{settings.executor!r}.",
            code=Code.WorkerSettingsInvalid,
        )
    _limit_malloc_arenas()
    logs.configure(settings.log_format)
    ctx = Context.create(settings)
    ctx.migrate()
    runner = procworker.ProcrastinateWorker(ctx, concurrency)
    say(f"pgvault worker {runner.ident}: {runner.concurrency} concurrent jobs")
    runner.run()
