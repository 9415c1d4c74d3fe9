"""What the CLI command modules share: option types, the command factory, job waiting.

Every API command is a small body registered with `command(...)`: the factory adds the
shared options, builds the client, runs the body under the error handler and prints its
answer, so those steps exist once.
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any

import typer
from rich.markup import escape
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
from pgvault.cli.output import Columns, Output, QueryError, compile_query, err, out, show

OutputOpt = Annotated[
    Output, typer.Option("--output", "-o", help="json, jsonc, table, tsv, yaml or none.")
]
QueryOpt = Annotated[
    str | None,
    typer.Option("--query", help="JMESPath query on the result (a list's items, as az does)."),
]
SubOpt = Annotated[str | None, typer.Option("--subscription", help="Subscription id.")]
RgOpt = Annotated[str, typer.Option("--resource-group", "-g", help="Resource group.")]
VaultOpt = Annotated[str, typer.Option("--vault-name", "-v", help="Backup vault name.")]
InstOpt = Annotated[str, typer.Option("--instance", "-i", help="Backup instance name.")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait for the job to finish.")]
NameOpt = Annotated[str, typer.Option("--name", "-n")]

JOB_COLUMNS: Columns = (
    ("Job", "name"),
    ("Operation", "properties.operation"),
    ("Status", "properties.status"),
    ("Phase", "properties.progress.phase"),
    ("Instance", "properties.backupInstanceFriendlyName"),
    ("Start", "properties.startTime"),
    ("Duration", "properties.duration"),
)


class UsageError(Exception):
    """A command given options it cannot use: printed like an API error, exit 2 (as az)."""

    def __init__(self, code: str, message: str, action: str) -> None:
        super().__init__(message)
        self.code, self.message, self.action = code, message, action


class Scope(Enum):
    """Which of `--subscription` / `--resource-group` a command takes."""

    none = "none"
    subscription = "subscription"
    group = "group"


@dataclass(frozen=True)
class Call:
    """What a command body gets: the API client, where the command points, how to print.

    The options every command shares end here, so a new shared option is one field plus
    one entry in `_shared_options`. `query` is the compiled `--query` (None without one).
    """

    client: Client
    output: Output = Output.table
    subscription: str | None = None
    resource_group: str = "default"
    query: Any = None

    @property
    def machine(self) -> bool:
        """A format for scripts (anything but the table): no progress bars, no prose."""
        return self.output != Output.table

    def subscription_path(self) -> str:
        return f"/subscriptions/{self.subscription or self.client.default_subscription()}"

    def group(self, resource_group: str | None = None) -> str:
        """The resource group path (this command's group unless another is named)."""
        return f"{self.subscription_path()}/resourceGroups/{resource_group or self.resource_group}"

    def provider(self, resource_type: str) -> str:
        """The collection path of a resource type in the group, e.g. `Microsoft.KeyVault/vaults`."""
        return f"{self.group()}/providers/{resource_type}"

    def vault(self, name: str) -> str:
        return f"{self.provider('Microsoft.DataProtection/backupVaults')}/{name}"

    def instance(self, vault_name: str, instance: str) -> str:
        return f"{self.vault(vault_name)}/backupInstances/{instance}"

    def show(self, data: Any, columns: Columns | None = None) -> None:
        """Print an API answer the way `--output` and `--query` ask."""
        show(data, self.output, columns, self.query)


Body = Callable[..., Any]


def command(
    app: typer.Typer,
    name: str,
    *,
    columns: Columns | None = None,
    scope: Scope = Scope.group,
    output: bool = True,
) -> Callable[[Body], Body]:
    """Register `body(call, **own_options)` as the command `name` of `app`.

    The command takes the body's own options, then the shared ones (`--output` and `--query`
    unless `output=False`, then `--subscription` / `--resource-group` as `scope` says). It
    runs everything, the client and the paths included, under `run` (API errors print as
    `CODE: message` and exit 1; a bad `--query` exits 2) and shows what the body returns
    with `columns`; a body that prints for itself returns None. The body's docstring is the
    command's help.
    """

    def register(body: Body) -> Body:
        own = list(inspect.signature(body, eval_str=True).parameters.values())[1:]
        shared = _shared_options(scope, output)

        def invoke(**options: Any) -> None:
            values = {p.name: options.pop(p.name) for p in shared}

            def whole() -> None:
                query = compile_query(values.pop("query", None))
                call = Call(client(), **values, query=query)
                data = body(call, **options)
                if data is not None:
                    call.show(data, columns)

            run(whole)

        params = [*own, *shared]
        setattr(invoke, "__signature__", inspect.Signature(params, return_annotation=None))  # noqa: B010
        invoke.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
        invoke.__doc__, invoke.__name__ = body.__doc__, body.__name__
        invoke.__qualname__, invoke.__module__ = body.__qualname__, body.__module__
        app.command(name)(invoke)
        return body

    return register


def _shared_options(scope: Scope, output: bool) -> list[inspect.Parameter]:
    """The options every command of a kind takes, last, in this order (as `--help` shows)."""
    kw = inspect.Parameter.KEYWORD_ONLY
    params = []
    if output:
        params.append(inspect.Parameter("output", kw, annotation=OutputOpt, default=Output.table))
        params.append(inspect.Parameter("query", kw, annotation=QueryOpt, default=None))
    if scope != Scope.none:
        params.append(inspect.Parameter("subscription", kw, annotation=SubOpt, default=None))
    if scope == Scope.group:
        params.append(inspect.Parameter("resource_group", kw, annotation=RgOpt, default="default"))
    return params


def client() -> Client:
    return Client.from_env()


def run(fn: Callable[[], Any]) -> Any:
    """Run a command, printing API errors as `CODE: message` plus the fix, exit 1.

    Usage errors (a bad `--query`) print the same way and exit 2, as az does.
    """
    try:
        return fn()
    except QueryError as exc:
        err.print(f"[red]error[/red] InvalidQuery: {escape(str(exc))}")
        err.print(
            "[yellow]fix:[/yellow] Give a JMESPath expression (https://jmespath.org), "
            'e.g. --query "[].name".'
        )
        raise typer.Exit(2) from None
    except UsageError as exc:
        err.print(f"[red]error[/red] {exc.code}: {escape(exc.message)}")
        err.print(f"[yellow]fix:[/yellow] {escape(exc.action)}")
        raise typer.Exit(2) from None
    except ApiError as exc:
        problems = [ApiError.from_body(exc.status, {"error": d}) for d in exc.details] or [exc]
        if len(problems) > 1:
            err.print(f"[red]error[/red] {len(problems)} checks failed:")
        for p in problems:
            err.print(f"[red]error[/red] {p.code}: {escape(p.message)}")
            if p.action:
                err.print(f"[yellow]fix:[/yellow] {escape(p.action)}")
        raise typer.Exit(1) from None


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


def finish_job(call: Call, accepted: Any, wait: bool) -> None:
    """Show the job an accepted request started (followed to its end with `--wait`)."""
    c = call.client
    status = follow(c, accepted)
    job_path = _job_path_from_op(status)
    job = watch(c, job_path, call.machine) if wait else c.get(job_path)
    call.show(job, JOB_COLUMNS)
    if wait and job["properties"]["status"] != "Completed":
        errors = job["properties"].get("errorDetails") or []
        for e in errors:
            err.print(f"[red]error[/red] {e.get('code')}: {e.get('message')}")
            for action in e.get("recommendedAction") or []:
                err.print(f"[yellow]fix:[/yellow] {action}")
        raise typer.Exit(1)
