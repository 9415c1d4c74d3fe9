"""What the CLI command modules share: option types, the client, error handling, job waiting."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from pgvault.cli.client import ApiError, Client
from pgvault.cli.output import Output, err, out, show

OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table or json")]
SubOpt = Annotated[str | None, typer.Option("--subscription", help="Subscription id.")]
RgOpt = Annotated[str, typer.Option("--resource-group", "-g", help="Resource group.")]
VaultOpt = Annotated[str, typer.Option("--vault-name", "-v", help="Backup vault name.")]
InstOpt = Annotated[str, typer.Option("--instance", "-i", help="Backup instance name.")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait for the job to finish.")]

JOB_COLUMNS = [
    ("Job", "name"),
    ("Operation", "properties.operation"),
    ("Status", "properties.status"),
    ("Phase", "properties.progress.phase"),
    ("Instance", "properties.backupInstanceFriendlyName"),
    ("Start", "properties.startTime"),
    ("Duration", "properties.duration"),
]


def client() -> Client:
    return Client.from_env()


def run(fn: Callable[[], Any]) -> Any:
    """Run a command body, printing API errors as `CODE: message` plus the fix, exit 1."""
    try:
        return fn()
    except ApiError as exc:
        problems = [ApiError.from_body(exc.status, {"error": d}) for d in exc.details] or [exc]
        if len(problems) > 1:
            err.print(f"[red]error[/red] {len(problems)} checks failed:")
        for p in problems:
            err.print(f"[red]error[/red] {p.code}: {p.message}")
            if p.action:
                err.print(f"[yellow]fix:[/yellow] {p.action}")
        raise typer.Exit(1) from None


def rg_path(c: Client, sub: str | None, rg: str) -> str:
    return f"/subscriptions/{sub or c.default_subscription()}/resourceGroups/{rg}"


def vault_path(c: Client, sub: str | None, rg: str, vault: str) -> str:
    return f"{rg_path(c, sub, rg)}/providers/Microsoft.DataProtection/backupVaults/{vault}"


def read_secret(prompt: str) -> str:
    """A secret from stdin when piped, else from a hidden prompt; never from argv."""
    if not sys.stdin.isatty():
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value
    else:
        value = typer.prompt(prompt, hide_input=True)
    if not value:
        err.print("[red]error[/red] BadParameter: the secret value is empty.")
        raise typer.Exit(2)
    return value


# -- jobs: following and waiting ------------------------------------------------------------


def follow(c: Client, accepted: Any) -> Any:
    """Poll an async operation to its end; a Failed one raises its error."""
    url = accepted.get("_async") if isinstance(accepted, dict) else None
    if not url:
        return accepted
    while True:
        status = c.operation(url)
        state = str(status.get("status", "")).lower()
        if state in ("succeeded", "failed", "canceled"):
            if state != "succeeded":
                raise ApiError.from_body(400, {"error": status.get("error") or {}})
            return status
        time.sleep(0.2)


def _job_path_from_op(status: Any) -> str:
    job_id: str = status["properties"]["jobId"]
    return job_id


def watch(c: Client, job_path: str, quiet: bool) -> Any:
    """Poll a job until it ends, with a progress bar on a terminal."""
    if quiet or not out.is_terminal:
        for delay in _poll_delays():
            job = c.get(job_path)
            if job["properties"]["status"] != "InProgress":
                return job
            time.sleep(delay)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=out, transient=False) as bar:
        task = bar.add_task("Queued", total=None)
        for delay in _poll_delays():
            job = c.get(job_path)
            p = job["properties"].get("progress") or {}
            bar.update(
                task,
                description=p.get("phase") or "",
                completed=p.get("bytesDone") or 0,
                total=p.get("bytesTotal"),
            )
            if job["properties"]["status"] != "InProgress":
                return job
            time.sleep(delay)
    raise AssertionError("unreachable")


def _poll_delays() -> Iterator[float]:
    """Poll quickly at first (short jobs end fast), then settle at a quarter second."""
    yield from (0.05, 0.05, 0.1, 0.1, 0.2)
    while True:
        yield 0.25


def finish_job(c: Client, accepted: Any, wait: bool, output: Output) -> None:
    status = follow(c, accepted)
    job_path = _job_path_from_op(status)
    job = watch(c, job_path, output == Output.json) if wait else c.get(job_path)
    show(job, output, JOB_COLUMNS)
    if wait and job["properties"]["status"] != "Completed":
        errors = job["properties"].get("errorDetails") or []
        for e in errors:
            err.print(f"[red]error[/red] {e.get('code')}: {e.get('message')}")
            for action in e.get("recommendedAction") or []:
                err.print(f"[yellow]fix:[/yellow] {action}")
        raise typer.Exit(1)
