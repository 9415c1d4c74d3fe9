"""`pgvault`: the service (`serve`) and a CLI over its REST API.

Every command takes `--output json|jsonc|table|tsv|yaml|none` and `--query` (JMESPath), as
`az` does, and `--subscription` / `--resource-group` (defaults: the service's default
subscription and `default`). Secrets are read from stdin or a prompt, never from argv.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from pgvault.cli.access import (
    audit_app,
    login,
    logout,
    principal_app,
    role_app,
    role_asg_app,
    role_def_app,
)
from pgvault.cli.backups import backup_app, catalog_app, job_app, restore_app, rp_app
from pgvault.cli.common import Call, Scope, command, read_secret
from pgvault.cli.instances import instance_app
from pgvault.cli.output import err, out
from pgvault.cli.resources import container_app, kv_app, sa_app, secret_app, server_app
from pgvault.cli.vaults import policy_app, vault_app
from pgvault.errors import PgVaultError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
auth_app = typer.Typer(no_args_is_help=True, help="Tokens for the API.")
for sub_app, name in [
    (auth_app, "auth"),
    (server_app, "server"),
    (kv_app, "keyvault"),
    (sa_app, "storage-account"),
    (vault_app, "vault"),
    (policy_app, "policy"),
    (instance_app, "instance"),
    (backup_app, "backup"),
    (rp_app, "recovery-point"),
    (restore_app, "restore"),
    (job_app, "job"),
    (principal_app, "principal"),
    (role_app, "role"),
    (audit_app, "audit"),
    (catalog_app, "catalog"),
]:
    app.add_typer(sub_app, name=name)
kv_app.add_typer(secret_app, name="secret")
role_app.add_typer(role_def_app, name="definition")
role_app.add_typer(role_asg_app, name="assignment")
sa_app.add_typer(container_app, name="container")


# -- serve and auth -------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int | None, typer.Option(help="In-process worker threads.")] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(help="PEM certificate (chain): serve https. Default: PGVAULT_TLS_CERT."),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(help="PEM private key of --tls-cert, mode 0600. Default: PGVAULT_TLS_KEY."),
    ] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Serve the API only; `pgvault worker`s run jobs.")
    ] = False,
    api_processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="API processes on the one port (only the first runs jobs and the scheduler). "
            "Default: PGVAULT_API_PROCESSES (1).",
        ),
    ] = None,
) -> None:
    """Start the service: REST API, in-process workers, embedded defaults under PGVAULT_HOME."""
    # Deferred: the server stack is expensive to import and only `serve` needs it (the other
    # commands are HTTP clients of it).
    from pgvault import server

    try:
        server.serve(
            host,
            port,
            workers,
            out.print,
            tls_cert=tls_cert,
            tls_key=tls_key,
            run_jobs=not no_worker,
            api_processes=api_processes,
        )
    except PgVaultError as exc:  # a refused start: what is wrong and the fix, no traceback
        _refused(exc)


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(help="Jobs run at once. Default: PGVAULT_WORKER_CONCURRENCY (2)."),
    ] = None,
) -> None:
    """Run jobs from the shared queue (PGVAULT_EXECUTOR=procrastinate, PostgreSQL metadata)."""
    from pgvault import server  # deferred, like serve

    try:
        server.worker(concurrency, out.print)
    except PgVaultError as exc:
        _refused(exc)


def _refused(exc: PgVaultError) -> None:
    """A refused start: what is wrong and the fix, no traceback."""
    err.print(f"[red]error[/red] {exc.code}: {escape(exc.message)}")
    err.print(f"[yellow]fix:[/yellow] {escape(exc.recommended_action)}")
    raise typer.Exit(1) from None


@app.command()
def demo(
    port: Annotated[int | None, typer.Option(help="Port of the portal and API.")] = None,
    exit_: Annotated[
        bool, typer.Option("--exit", help="Stop after the walk-through instead of serving on.")
    ] = False,
) -> None:
    """The whole product on a throwaway PostgreSQL: protect, back up, restore (database and
    files), compare; then the portal keeps running until Ctrl-C."""
    from pgvault.cli import demo as walkthrough

    try:
        with walkthrough.demo(out.print, port) as d:
            d.run()
            if not exit_:
                d.portal_hint()
                with contextlib.suppress(KeyboardInterrupt):
                    while d.serve is not None and d.serve.poll() is None:
                        time.sleep(1)
    except PgVaultError as exc:
        err.print(f"[red]error[/red] {exc.code}: {escape(exc.message)}")
        err.print(f"[yellow]fix:[/yellow] {escape(exc.recommended_action)}")
        raise typer.Exit(1) from None


@command(auth_app, "token", scope=Scope.none, output=False)
def auth_token(
    call: Call,
    client_id: Annotated[str | None, typer.Option(help="Service principal client id.")] = None,
) -> None:
    """Print a bearer token (last line): the admin's, or a client's (secret from stdin)."""
    secret = read_secret("Client secret") if client_id else None
    print(call.client.fetch_token(client_id, secret))


command(app, "login", scope=Scope.none, output=False)(login)
command(app, "logout", scope=Scope.none, output=False)(logout)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
