"""`pgvault`: the service (`serve`) and a CLI over its REST API.

Every command takes `--output json` (the API's JSON) and `--subscription` /
`--resource-group` (defaults: the service's default subscription and `default`).
Secrets are read from stdin or a prompt, never from argv.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar

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

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
auth_app = typer.Typer(no_args_is_help=True, help="Tokens for the API.")
server_app = typer.Typer(no_args_is_help=True, help="Registered PostgreSQL servers.")
kv_app = typer.Typer(no_args_is_help=True, help="Key vaults holding connection strings.")
secret_app = typer.Typer(no_args_is_help=True, help="Secrets in a key vault.")
sa_app = typer.Typer(no_args_is_help=True, help="Storage accounts for restore as files.")
container_app = typer.Typer(no_args_is_help=True, help="Containers in a storage account.")
vault_app = typer.Typer(no_args_is_help=True, help="Backup vaults.")
policy_app = typer.Typer(no_args_is_help=True, help="Backup policies.")
instance_app = typer.Typer(no_args_is_help=True, help="Backup instances (protected databases).")
backup_app = typer.Typer(no_args_is_help=True, help="On-demand backups.")
rp_app = typer.Typer(no_args_is_help=True, help="Recovery points.")
restore_app = typer.Typer(no_args_is_help=True, help="Restore as a database or as files.")
job_app = typer.Typer(no_args_is_help=True, help="Backup and restore jobs.")
principal_app = typer.Typer(no_args_is_help=True, help="Users and service principals.")
role_app = typer.Typer(no_args_is_help=True, help="Roles and role assignments (RBAC).")
role_def_app = typer.Typer(no_args_is_help=True, help="Role definitions.")
role_asg_app = typer.Typer(no_args_is_help=True, help="Role assignments at scopes.")
audit_app = typer.Typer(no_args_is_help=True, help="The audit log.")
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
]:
    app.add_typer(sub_app, name=name)
kv_app.add_typer(secret_app, name="secret")
role_app.add_typer(role_def_app, name="definition")
role_app.add_typer(role_asg_app, name="assignment")
sa_app.add_typer(container_app, name="container")

OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table or json")]
SubOpt = Annotated[str | None, typer.Option("--subscription", help="Subscription id.")]
RgOpt = Annotated[str, typer.Option("--resource-group", "-g", help="Resource group.")]
VaultOpt = Annotated[str, typer.Option("--vault-name", "-v", help="Backup vault name.")]
InstOpt = Annotated[str, typer.Option("--instance", "-i", help="Backup instance name.")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait for the job to finish.")]

F = TypeVar("F", bound=Callable[..., Any])
JOB_COLUMNS = [
    ("Job", "name"),
    ("Operation", "properties.operation"),
    ("Status", "properties.status"),
    ("Phase", "properties.progress.phase"),
    ("Instance", "properties.backupInstanceFriendlyName"),
    ("Start", "properties.startTime"),
    ("Duration", "properties.duration"),
]


def _client() -> Client:
    return Client.from_env()


def _run(fn: Callable[[], Any]) -> Any:
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


def _rg_path(c: Client, sub: str | None, rg: str) -> str:
    return f"/subscriptions/{sub or c.default_subscription()}/resourceGroups/{rg}"


def _dp(c: Client, sub: str | None, rg: str, vault: str) -> str:
    return f"{_rg_path(c, sub, rg)}/providers/Microsoft.DataProtection/backupVaults/{vault}"


def _read_secret(prompt: str) -> str:
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


# -- serve and auth -------------------------------------------------------------------------


def _limit_malloc_arenas() -> None:
    """Cap glibc's per-thread malloc arenas: many threads otherwise keep RSS high after a job."""
    import contextlib
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int | None, typer.Option(help="In-process worker threads.")] = None,
) -> None:
    """Start the service: REST API, in-process workers, embedded defaults under PGVAULT_HOME."""
    import logging

    _limit_malloc_arenas()

    import uvicorn

    from pgvault.api.app import create_app
    from pgvault.config import Settings
    from pgvault.context import Context

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    public = os.environ.get("PGVAULT_PUBLIC_URL") or f"http://{host}:{port}"
    settings = Settings.from_env(public_url=public, workers=workers)
    ctx = Context.create(settings)
    out.print(f"pgvault serving on http://{host}:{port} (home: {settings.home})")
    out.print("Get a bearer token with: pgvault auth token")
    uvicorn.run(create_app(ctx), host=host, port=port, log_level="info")


@auth_app.command("token")
def auth_token(
    client_id: Annotated[str | None, typer.Option(help="Service principal client id.")] = None,
) -> None:
    """Print a bearer token (last line): the admin's, or a client's (secret from stdin)."""
    c = _client()
    secret = _read_secret("Client secret") if client_id else None
    token = _run(lambda: c.fetch_token(client_id, secret))
    print(token)


# -- servers --------------------------------------------------------------------------------

SERVER_COLUMNS = [
    ("Name", "name"),
    ("Host", "properties.fullyQualifiedDomainName"),
    ("Port", "properties.port"),
    ("Region", "location"),
    ("Id", "id"),
]


def _server_path(c: Client, sub: str | None, rg: str) -> str:
    return f"{_rg_path(c, sub, rg)}/providers/Microsoft.DBforPostgreSQL/servers"


@server_app.command("add")
def server_add(
    name: Annotated[str, typer.Option("--name", "-n")],
    host: Annotated[str, typer.Option()],
    region: Annotated[str, typer.Option("--region", "-l")],
    port: Annotated[int, typer.Option()] = 5432,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Register a PostgreSQL server (address and region; credentials go in a key vault)."""
    c = _client()
    body = {"location": region, "properties": {"fullyQualifiedDomainName": host, "port": port}}
    data = _run(lambda: c.put(f"{_server_path(c, subscription, resource_group)}/{name}", body))
    show(data, output, SERVER_COLUMNS)


@server_app.command("list")
def server_list(
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """List registered servers."""
    c = _client()
    show(_run(lambda: c.get(_server_path(c, subscription, resource_group))), output, SERVER_COLUMNS)


@server_app.command("show")
def server_show(
    name: Annotated[str, typer.Option("--name", "-n")],
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Show one registered server."""
    c = _client()
    data = _run(lambda: c.get(f"{_server_path(c, subscription, resource_group)}/{name}"))
    show(data, output, SERVER_COLUMNS)


# -- key vaults -----------------------------------------------------------------------------


def _kv_path(c: Client, sub: str | None, rg: str) -> str:
    return f"{_rg_path(c, sub, rg)}/providers/Microsoft.KeyVault/vaults"


@kv_app.command("create")
def keyvault_create(
    name: Annotated[str, typer.Option("--name", "-n")],
    region: Annotated[str, typer.Option("--region", "-l")],
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Create a key vault."""
    c = _client()
    data = _run(
        lambda: c.put(f"{_kv_path(c, subscription, resource_group)}/{name}", {"location": region})
    )
    show(data, output, [("Name", "name"), ("Region", "location"), ("Id", "id")])


@kv_app.command("list")
def keyvault_list(
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """List key vaults."""
    c = _client()
    show(
        _run(lambda: c.get(_kv_path(c, subscription, resource_group))),
        output,
        [("Name", "name"), ("Region", "location"), ("Id", "id")],
    )


SECRET_COLUMNS = [
    ("Name", "name"),
    ("Secret URI", "properties.secretUri"),
    ("Version URI", "properties.secretUriWithVersion"),
]


@secret_app.command("set")
def secret_set(
    vault_name: Annotated[str, typer.Option("--vault-name")],
    name: Annotated[str, typer.Option("--name", "-n")],
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Store a new secret version; the value is read from stdin (or a hidden prompt)."""
    c = _client()
    value = _read_secret("Secret value")
    path = f"{_kv_path(c, subscription, resource_group)}/{vault_name}/secrets/{name}"
    data = _run(lambda: c.put(path, {"properties": {"value": value}}))
    show(data, output, SECRET_COLUMNS)


@secret_app.command("list")
def secret_list(
    vault_name: Annotated[str, typer.Option("--vault-name")],
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """List secrets (URIs only; values are never shown)."""
    c = _client()
    path = f"{_kv_path(c, subscription, resource_group)}/{vault_name}/secrets"
    show(_run(lambda: c.get(path)), output, SECRET_COLUMNS)


# -- storage accounts -----------------------------------------------------------------------


def _sa_path(c: Client, sub: str | None, rg: str) -> str:
    return f"{_rg_path(c, sub, rg)}/providers/Microsoft.Storage/storageAccounts"


SA_COLUMNS = [
    ("Name", "name"),
    ("Kind", "properties.backend.type"),
    ("Region", "location"),
    ("Blob endpoint", "properties.primaryEndpoints.blob"),
]


@sa_app.command("create")
def storage_account_create(
    name: Annotated[str, typer.Option("--name", "-n")],
    region: Annotated[str, typer.Option("--region", "-l")],
    kind: Annotated[str, typer.Option(help="local, s3 or azure")] = "local",
    path: Annotated[str | None, typer.Option(help="local: directory")] = None,
    bucket: Annotated[str | None, typer.Option(help="s3: bucket")] = None,
    endpoint: Annotated[str | None, typer.Option(help="s3/azure: endpoint URL")] = None,
    s3_region: Annotated[str | None, typer.Option(help="s3: bucket region")] = None,
    access_key_id: Annotated[str | None, typer.Option(help="s3: access key id")] = None,
    account_name: Annotated[str | None, typer.Option(help="azure: account name")] = None,
    key_stdin: Annotated[
        bool,
        typer.Option("--key-stdin", help="Read the secret access key / account key from stdin."),
    ] = False,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Create a storage account backed by a local directory, an S3 bucket or Azure Blob."""
    backend: dict[str, Any] = {"type": kind}
    if path:
        backend["path"] = os.path.abspath(path)
    for key, value in (
        ("bucket", bucket),
        ("endpoint", endpoint),
        ("region", s3_region),
        ("accessKeyId", access_key_id),
        ("accountName", account_name),
    ):
        if value:
            backend[key] = value
    if key_stdin:
        backend["secretAccessKey" if kind == "s3" else "accountKey"] = _read_secret("Key")
    c = _client()
    data = _run(
        lambda: c.put(
            f"{_sa_path(c, subscription, resource_group)}/{name}",
            {"location": region, "properties": {"backend": backend}},
        )
    )
    show(data, output, SA_COLUMNS)


@sa_app.command("list")
def storage_account_list(
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """List storage accounts."""
    c = _client()
    show(_run(lambda: c.get(_sa_path(c, subscription, resource_group))), output, SA_COLUMNS)


@container_app.command("create")
def container_create(
    account_name: Annotated[str, typer.Option("--account-name")],
    name: Annotated[str, typer.Option("--name", "-n")],
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Create a container; its URL is what `restore files --container` takes."""
    c = _client()
    path = (
        f"{_sa_path(c, subscription, resource_group)}/{account_name}"
        f"/blobServices/default/containers/{name}"
    )
    show(
        _run(lambda: c.put(path, {})),
        output,
        [("Name", "name"), ("URL", "properties.url"), ("Id", "id")],
    )


@container_app.command("list")
def container_list(
    account_name: Annotated[str, typer.Option("--account-name")],
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """List containers of a storage account."""
    c = _client()
    path = f"{_sa_path(c, subscription, resource_group)}/{account_name}/blobServices/default/containers"
    show(_run(lambda: c.get(path)), output, [("Name", "name"), ("URL", "properties.url")])


# -- vaults and policies --------------------------------------------------------------------

VAULT_COLUMNS = [
    ("Name", "name"),
    ("Region", "location"),
    ("Identity", "identity.principalId"),
    ("Id", "id"),
]


@vault_app.command("create")
def vault_create(
    name: Annotated[str, typer.Option("--name", "-n")],
    region: Annotated[str, typer.Option("--region", "-l")],
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Create a backup vault in a region (with its managed identity)."""
    c = _client()
    body = {"location": region, "identity": {"type": "SystemAssigned"}, "properties": {}}
    show(
        _run(lambda: c.put(_dp(c, subscription, resource_group, name), body)), output, VAULT_COLUMNS
    )


@vault_app.command("list")
def vault_list(
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """List backup vaults."""
    c = _client()
    path = f"{_rg_path(c, subscription, resource_group)}/providers/Microsoft.DataProtection/backupVaults"
    show(_run(lambda: c.get(path)), output, VAULT_COLUMNS)


@vault_app.command("show")
def vault_show(
    name: Annotated[str, typer.Option("--name", "-n")],
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Show a backup vault."""
    c = _client()
    show(_run(lambda: c.get(_dp(c, subscription, resource_group, name))), output, VAULT_COLUMNS)


@vault_app.command("delete")
def vault_delete(
    name: Annotated[str, typer.Option("--name", "-n")],
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Delete an empty backup vault."""
    c = _client()
    _run(lambda: c.delete(_dp(c, subscription, resource_group, name)))
    out.print(f"Deleted vault {name}.")


POLICY_COLUMNS = [("Name", "name"), ("Summary", "properties.summary")]


@policy_app.command("create")
def policy_create(
    vault_name: VaultOpt,
    name: Annotated[str, typer.Option("--name", "-n")],
    schedule: Annotated[str, typer.Option(help="weekly, daily or hourly")] = "weekly",
    days: Annotated[str, typer.Option(help="weekly: days, e.g. Sunday,Wednesday")] = "Sunday",
    time: Annotated[str, typer.Option(help="Start time HH:MM in --timezone")] = "02:00",
    every_hours: Annotated[int | None, typer.Option(help="hourly: 1,2,3,4,6,8 or 12")] = None,
    timezone: Annotated[str, typer.Option(help="UTC or an IANA zone")] = "UTC",
    keep_default: Annotated[str, typer.Option(help="ISO 8601, e.g. P3M")] = "P3M",
    keep_daily: Annotated[str | None, typer.Option(help="first backup of each day")] = None,
    keep_weekly: Annotated[str | None, typer.Option(help="first backup of each week")] = None,
    keep_monthly: Annotated[str | None, typer.Option(help="first backup of each month")] = None,
    keep_yearly: Annotated[str | None, typer.Option(help="first backup of each year")] = None,
    archive_after: Annotated[
        str | None, typer.Option(help="on-expiry, immediate, or a duration like P30D")
    ] = None,
    archive_keep: Annotated[str, typer.Option(help="total age kept in archive")] = "P3Y",
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Create or replace a policy: schedule, retention per tag, archive tier."""
    from pgvault import retention

    c = _client()
    path = f"{_dp(c, subscription, resource_group, vault_name)}/backupPolicies/{name}"

    def body() -> Any:
        try:
            props = retention.build_policy(
                schedule=schedule,
                days=tuple(d.strip() for d in days.split(",") if d.strip()),
                time=time,
                every_hours=every_hours,
                timezone=timezone,
                keep_default=keep_default,
                keep_daily=keep_daily,
                keep_weekly=keep_weekly,
                keep_monthly=keep_monthly,
                keep_yearly=keep_yearly,
                archive_after=archive_after,
                archive_keep=archive_keep,
            )
        except Exception as exc:  # the same validation the service runs
            raise ApiError(getattr(exc, "code", "BadParameter"), str(exc)) from None
        return c.put(path, {"properties": props})

    show(_run(body), output, POLICY_COLUMNS)


@policy_app.command("show")
def policy_show(
    vault_name: VaultOpt,
    name: Annotated[str, typer.Option("--name", "-n")],
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Show a policy with a readable summary."""
    c = _client()
    path = f"{_dp(c, subscription, resource_group, vault_name)}/backupPolicies/{name}"
    show(_run(lambda: c.get(path)), output, [*POLICY_COLUMNS, ("Id", "id")])


@policy_app.command("list")
def policy_list(
    vault_name: VaultOpt,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """List backup policies of a vault."""
    c = _client()
    path = f"{_dp(c, subscription, resource_group, vault_name)}/backupPolicies"
    show(_run(lambda: c.get(path)), output, POLICY_COLUMNS)


@policy_app.command("delete")
def policy_delete(
    vault_name: VaultOpt,
    name: Annotated[str, typer.Option("--name", "-n")],
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Delete a policy no instance uses."""
    c = _client()
    _run(
        lambda: c.delete(
            f"{_dp(c, subscription, resource_group, vault_name)}/backupPolicies/{name}"
        )
    )
    out.print(f"Deleted policy {name}.")


# -- instances ------------------------------------------------------------------------------

INSTANCE_COLUMNS = [
    ("Name", "name"),
    ("Database", "properties.friendlyName"),
    ("State", "properties.currentProtectionState"),
    ("Policy", "properties.policyInfo.policyId"),
]


@instance_app.command("create")
def instance_create(
    vault_name: VaultOpt,
    server: Annotated[str, typer.Option(help="Registered server name.")],
    database: Annotated[str, typer.Option(help="Database to protect.")],
    policy: Annotated[str, typer.Option(help="Backup policy name.")],
    secret: Annotated[str, typer.Option(help="Key-vault secret URI with the connection string.")],
    name: Annotated[str | None, typer.Option("--name", "-n", help="Instance name.")] = None,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Protect a database: validate (login, privileges, versions), then create the instance."""
    import uuid

    c = _client()
    rg_path = _rg_path(c, subscription, resource_group)
    vault = _dp(c, subscription, resource_group, vault_name)
    server_id = f"{rg_path}/providers/Microsoft.DBforPostgreSQL/servers/{server}"
    props = {
        "objectType": "BackupInstance",
        "dataSourceInfo": {
            "objectType": "Datasource",
            "resourceID": f"{server_id}/databases/{database}",
            "resourceName": database,
            "datasourceType": "Microsoft.DBforPostgreSQL/servers/databases",
        },
        "dataSourceSetInfo": {
            "objectType": "DatasourceSet",
            "resourceID": server_id,
            "resourceName": server,
        },
        "policyInfo": {"policyId": f"{vault}/backupPolicies/{policy}"},
        "datasourceAuthCredentials": {
            "objectType": "SecretStoreBasedAuthCredentials",
            "secretStoreResource": {"secretStoreType": "AzureKeyVault", "uri": secret},
        },
    }
    bi_name = name or f"{server}-{database}-{uuid.uuid4().hex[:8]}"

    def body() -> Any:
        op = c.post(f"{vault}/validateForBackup", {"backupInstance": props})
        _follow(c, op)
        return c.put(f"{vault}/backupInstances/{bi_name}", {"properties": props})

    show(_run(body), output, INSTANCE_COLUMNS)


@instance_app.command("list")
def instance_list(
    vault_name: VaultOpt,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """List backup instances of a vault."""
    c = _client()
    path = f"{_dp(c, subscription, resource_group, vault_name)}/backupInstances"
    show(_run(lambda: c.get(path)), output, INSTANCE_COLUMNS)


@instance_app.command("show")
def instance_show(
    vault_name: VaultOpt,
    instance: Annotated[str, typer.Option("--name", "-n")],
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Show a backup instance."""
    c = _client()
    path = f"{_dp(c, subscription, resource_group, vault_name)}/backupInstances/{instance}"
    show(_run(lambda: c.get(path)), output, INSTANCE_COLUMNS)


@instance_app.command("delete")
def instance_delete(
    vault_name: VaultOpt,
    instance: Annotated[str, typer.Option("--name", "-n")],
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Delete the instance with its data (soft delete: kept, listed and undeletable for the
    vault's soft-delete days; immediately if soft delete is off)."""
    c = _client()
    path = f"{_dp(c, subscription, resource_group, vault_name)}/backupInstances/{instance}"
    _run(lambda: _follow(c, c.delete(path)))
    out.print(f"Deleted backup instance {instance}.")


def _protection_command(action: str, name: str, doc: str) -> None:
    def command(
        vault_name: VaultOpt,
        instance: Annotated[str, typer.Option("--name", "-n")],
        output: OutputOpt = Output.table,
        subscription: SubOpt = None,
        resource_group: RgOpt = "default",
    ) -> None:
        c = _client()
        path = f"{_dp(c, subscription, resource_group, vault_name)}/backupInstances/{instance}"

        def body() -> Any:
            _follow(c, c.post(f"{path}/{action}"))
            return c.get(path)

        show(_run(body), output, INSTANCE_COLUMNS)

    command.__doc__ = doc
    instance_app.command(name)(command)


_protection_command(
    "stopProtection", "stop-protection", "Stop protection and retain all data forever."
)
_protection_command(
    "suspendBackups",
    "suspend-backups",
    "Stop scheduled backups; points expire by policy, the latest is kept.",
)
_protection_command(
    "resumeProtection", "resume-protection", "Resume protection after stop-protection."
)
_protection_command(
    "resumeBackups", "resume-backups", "Resume scheduled backups after suspend-backups."
)


@instance_app.command("list-deleted")
def instance_list_deleted(
    vault_name: VaultOpt,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """List soft-deleted instances (undeletable until their purge time)."""
    c = _client()
    path = f"{_dp(c, subscription, resource_group, vault_name)}/deletedBackupInstances"
    show(
        _run(lambda: c.get(path)),
        output,
        [
            ("Name", "name"),
            ("Database", "properties.friendlyName"),
            ("Deleted", "properties.deletionInfo.deletionTime"),
            ("Purge", "properties.deletionInfo.scheduledPurgeTime"),
        ],
    )


@instance_app.command("undelete")
def instance_undelete(
    vault_name: VaultOpt,
    instance: Annotated[str, typer.Option("--name", "-n")],
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Bring back a soft-deleted instance (protection stopped, data retained)."""
    c = _client()
    vault = _dp(c, subscription, resource_group, vault_name)

    def body() -> Any:
        _follow(c, c.post(f"{vault}/deletedBackupInstances/{instance}/undelete"))
        return c.get(f"{vault}/backupInstances/{instance}")

    show(_run(body), output, INSTANCE_COLUMNS)


# -- jobs: following and waiting ------------------------------------------------------------


def _follow(c: Client, accepted: Any) -> Any:
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


def _watch(c: Client, job_path: str, quiet: bool) -> Any:
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


def _finish_job(c: Client, accepted: Any, wait: bool, output: Output) -> None:
    status = _follow(c, accepted)
    job_path = _job_path_from_op(status)
    job = _watch(c, job_path, output == Output.json) if wait else c.get(job_path)
    show(job, output, JOB_COLUMNS)
    if wait and job["properties"]["status"] != "Completed":
        errors = job["properties"].get("errorDetails") or []
        for e in errors:
            err.print(f"[red]error[/red] {e.get('code')}: {e.get('message')}")
            for action in e.get("recommendedAction") or []:
                err.print(f"[yellow]fix:[/yellow] {action}")
        raise typer.Exit(1)


@backup_app.command("now")
def backup_now(
    vault_name: VaultOpt,
    instance: InstOpt,
    wait: WaitOpt = False,
    retention_tag: Annotated[str | None, typer.Option(help="Retention tag override.")] = None,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Take an on-demand full backup."""
    c = _client()
    path = f"{_dp(c, subscription, resource_group, vault_name)}/backupInstances/{instance}/backup"
    body: dict[str, Any] = {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {}}}
    if retention_tag:
        body["backupRuleOptions"]["triggerOption"]["retentionTagOverride"] = retention_tag
    _run(lambda: _finish_job(c, c.post(path, body), wait, output))


RP_COLUMNS = [
    ("Recovery point", "name"),
    ("Time", "properties.recoveryPointTime"),
    ("Tier", "properties.recoveryPointDataStoresDetails.0.type"),
    ("Tag", "properties.retentionTagName"),
    ("Stored bytes", "properties.storedBytes"),
]


@rp_app.command("list")
def recovery_point_list(
    vault_name: VaultOpt,
    instance: InstOpt,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """List recovery points, latest first."""
    c = _client()
    path = (
        f"{_dp(c, subscription, resource_group, vault_name)}/backupInstances/{instance}"
        "/recoveryPoints"
    )
    data = _run(lambda: c.get(path))
    for item in data.get("value", []):
        details = item["properties"].get("recoveryPointDataStoresDetails") or []
        item["properties"]["tier"] = "+".join(d.get("type", "") for d in details)
    show(data, output, [*RP_COLUMNS[:2], ("Tier", "properties.tier"), *RP_COLUMNS[3:]])


# Set by the restore commands' --rehydration-* options (archive points).
REHYDRATION: dict[str, str | None] = {"priority": None, "duration": None}
PriorityOpt = Annotated[
    str | None,
    typer.Option("--rehydration-priority", help="Archive points: Standard (default) or High."),
]
DurationOpt = Annotated[
    str | None,
    typer.Option("--rehydration-duration", help="Archive points: P10D..P30D (default P15D)."),
]


def _restore(
    c: Client,
    sub: str | None,
    rg: str,
    vault_name: str,
    instance: str,
    body: dict[str, Any],
    wait: bool,
    validate_only: bool,
    output: Output,
) -> None:
    bi = f"{_dp(c, sub, rg, vault_name)}/backupInstances/{instance}"
    if REHYDRATION["priority"] or REHYDRATION["duration"]:
        body = {
            **body,
            "objectType": "AzureBackupRestoreWithRehydrationRequest",
            "sourceDataStoreType": "ArchiveStore",
            "rehydrationPriority": REHYDRATION["priority"] or "Standard",
            "rehydrationRetentionDuration": REHYDRATION["duration"] or "P15D",
        }
    _follow(c, c.post(f"{bi}/validateRestore", {"restoreRequestObject": body}))
    if validate_only:
        out.print("Validation passed: the restore can run.")
        return
    _finish_job(c, c.post(f"{bi}/restore", body), wait, output)


@restore_app.command("database")
def restore_database(
    vault_name: VaultOpt,
    instance: InstOpt,
    recovery_point: Annotated[str, typer.Option(help="Recovery point id.")],
    target_server: Annotated[str, typer.Option(help="Registered target server name.")],
    target_database: Annotated[str, typer.Option(help="New database name (must not exist).")],
    secret: Annotated[str, typer.Option(help="Secret URI with the target's connection string.")],
    target_resource_group: Annotated[str | None, typer.Option(help="Target server's RG.")] = None,
    wait: WaitOpt = False,
    rehydration_priority: PriorityOpt = None,
    rehydration_duration: DurationOpt = None,
    validate_only: Annotated[bool, typer.Option(help="Only run Review + restore checks.")] = False,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Restore a recovery point as a new database (owned by the secret's user)."""
    REHYDRATION.update(priority=rehydration_priority, duration=rehydration_duration)
    c = _client()
    server_id = (
        f"{_rg_path(c, subscription, target_resource_group or resource_group)}"
        f"/providers/Microsoft.DBforPostgreSQL/servers/{target_server}"
    )
    body = {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": recovery_point,
        "sourceDataStoreType": "VaultStore",
        "restoreTargetInfo": {
            "objectType": "RestoreTargetInfo",
            "recoveryOption": "FailIfExists",
            "datasourceInfo": {
                "objectType": "Datasource",
                "resourceID": f"{server_id}/databases/{target_database}",
                "resourceName": target_database,
            },
            "datasourceSetInfo": {"objectType": "DatasourceSet", "resourceID": server_id},
            "datasourceAuthCredentials": {
                "objectType": "SecretStoreBasedAuthCredentials",
                "secretStoreResource": {"secretStoreType": "AzureKeyVault", "uri": secret},
            },
        },
    }
    _run(
        lambda: _restore(
            c, subscription, resource_group, vault_name, instance, body, wait, validate_only, output
        )
    )


@restore_app.command("files")
def restore_files(
    vault_name: VaultOpt,
    instance: InstOpt,
    recovery_point: Annotated[str, typer.Option(help="Recovery point id.")],
    container: Annotated[
        str, typer.Option(help="Container URL (storage account blob endpoint + container name).")
    ],
    file_prefix: Annotated[str, typer.Option(help="Prefix of the files written.")],
    wait: WaitOpt = False,
    rehydration_priority: PriorityOpt = None,
    rehydration_duration: DurationOpt = None,
    validate_only: Annotated[bool, typer.Option(help="Only run Review + restore checks.")] = False,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Restore a recovery point as dump files for your own pg_restore (grants kept)."""
    REHYDRATION.update(priority=rehydration_priority, duration=rehydration_duration)
    c = _client()
    body = {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": recovery_point,
        "sourceDataStoreType": "VaultStore",
        "restoreTargetInfo": {
            "objectType": "RestoreFilesTargetInfo",
            "recoveryOption": "FailIfExists",
            "targetDetails": {
                "url": container,
                "filePrefix": file_prefix,
                "restoreTargetLocationType": "AzureBlobs",
            },
        },
    }
    _run(
        lambda: _restore(
            c, subscription, resource_group, vault_name, instance, body, wait, validate_only, output
        )
    )


@rp_app.command("show")
def recovery_point_show(
    vault_name: VaultOpt,
    instance: InstOpt,
    recovery_point: Annotated[str, typer.Option(help="Recovery point id.")],
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Show one recovery point: time, tag, tiers, expiry, sizes, manifest metadata."""
    c = _client()
    path = (
        f"{_dp(c, subscription, resource_group, vault_name)}/backupInstances/{instance}"
        f"/recoveryPoints/{recovery_point}"
    )
    show(_run(lambda: c.get(path)), output, [*RP_COLUMNS, ("Expiry", "properties.expiryTime")])


@rp_app.command("rehydrate")
def recovery_point_rehydrate(
    vault_name: VaultOpt,
    instance: InstOpt,
    recovery_point: Annotated[str, typer.Option(help="Recovery point id.")],
    rehydration_priority: PriorityOpt = None,
    rehydration_duration: DurationOpt = None,
    wait: WaitOpt = False,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Bring an archived point back to the vault tier for a while (then restores need none)."""
    c = _client()
    path = (
        f"{_dp(c, subscription, resource_group, vault_name)}/backupInstances/{instance}/rehydrate"
    )
    body = {
        "recoveryPointId": recovery_point,
        "rehydrationPriority": rehydration_priority or "Standard",
        "rehydrationRetentionDuration": rehydration_duration or "P15D",
    }
    _run(lambda: _finish_job(c, c.post(path, body), wait, output))


@job_app.command("list")
def job_list(
    vault_name: VaultOpt,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """List jobs of a vault, newest first."""
    c = _client()
    path = f"{_dp(c, subscription, resource_group, vault_name)}/backupJobs"
    show(_run(lambda: c.get(path)), output, JOB_COLUMNS)


def _job_path(c: Client, sub: str | None, rg: str, vault_name: str, job_id: str) -> str:
    if job_id.startswith("/subscriptions/"):
        return job_id
    return f"{_dp(c, sub, rg, vault_name)}/backupJobs/{job_id}"


@job_app.command("show")
def job_show(
    job_id: Annotated[str, typer.Argument(help="Job id (or full job resource id).")],
    vault_name: VaultOpt,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Show a job: status, phases, bytes, errors."""
    c = _client()
    data = _run(lambda: c.get(_job_path(c, subscription, resource_group, vault_name, job_id)))
    show(
        data,
        output,
        [
            *JOB_COLUMNS,
            ("Bytes", "properties.progress.bytesDone"),
            ("Error", "properties.errorDetails"),
        ],
    )


@job_app.command("watch")
def job_watch(
    job_id: Annotated[str, typer.Argument(help="Job id (or full job resource id).")],
    vault_name: VaultOpt,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Follow a job with a progress bar (bytes, phase, ETA) until it ends."""
    c = _client()
    path = _run(lambda: _job_path(c, subscription, resource_group, vault_name, job_id))
    job = _run(lambda: _watch(c, path, output == Output.json))
    show(job, output, JOB_COLUMNS)
    if job["properties"]["status"] != "Completed":
        raise typer.Exit(1)


# -- identity and access --------------------------------------------------------------------

PRINCIPAL_COLUMNS = [
    ("Name", "name"),
    ("Type", "properties.principalType"),
    ("Principal id", "properties.principalId"),
    ("Client id", "properties.clientId"),
]


@principal_app.command("create")
def principal_create(
    name: Annotated[str, typer.Option("--name", "-n")],
    type_: Annotated[str, typer.Option("--type", help="user or service-principal")] = "user",
    output: OutputOpt = Output.table,
) -> None:
    """Create a user or service principal; its password / client secret is printed once."""
    c = _client()
    data = _run(
        lambda: c.put(f"/pgvault/principals/{name}", {"properties": {"principalType": type_}})
    )
    props = data["properties"]
    result = {"principalId": props["principalId"], "secret": props.get("secret")}
    if props.get("clientId"):
        result["clientId"] = props["clientId"]
    if output == Output.json:
        show(result, output)
        return
    show(data, output, PRINCIPAL_COLUMNS)
    label = "Client secret" if props.get("clientId") else "Password"
    out.print(f"[bold]{label} (shown once):[/bold] {props.get('secret')}")


@principal_app.command("list")
def principal_list(output: OutputOpt = Output.table) -> None:
    """List principals (users, service principals, vault identities)."""
    c = _client()
    show(_run(lambda: c.get("/pgvault/principals")), output, PRINCIPAL_COLUMNS)


@principal_app.command("delete")
def principal_delete(name: Annotated[str, typer.Option("--name", "-n")]) -> None:
    """Delete a principal and its role assignments."""
    c = _client()
    _run(lambda: c.delete(f"/pgvault/principals/{name}"))
    out.print(f"Deleted principal {name}.")


@app.command()
def login(
    username: Annotated[str | None, typer.Option(help="User name (password prompted).")] = None,
    client_id: Annotated[
        str | None, typer.Option(help="Service principal (secret on stdin).")
    ] = None,
) -> None:
    """Sign in as a user or a service principal; later commands use that identity."""
    c = _client()
    if client_id:
        secret = _read_secret("Client secret")
        token = _run(lambda: c.fetch_token(client_id, secret))
        who = client_id
    else:
        user = username or typer.prompt("User name")
        password = _read_secret("Password")
        token = _run(lambda: c.fetch_user_token(user, password))
        who = user
    c.remember(token)
    out.print(f"Signed in as {who}.")


@app.command()
def logout() -> None:
    """Revoke the current token and forget it."""
    c = _client()
    _run(lambda: c.post("/oauth2/revoke"))
    c.forget()
    out.print("Signed out.")


ROLE_COLUMNS = [("Role", "properties.roleName"), ("Type", "properties.type"), ("Id", "name")]
ASSIGNMENT_COLUMNS = [
    ("Id", "id"),
    ("Role", "properties.roleDefinitionName"),
    ("Principal", "properties.principalId"),
    ("Scope", "properties.scope"),
]


@role_def_app.command("list")
def role_definition_list(output: OutputOpt = Output.table) -> None:
    """List role definitions (built-in and custom) with their actions."""
    c = _client()
    show(
        _run(lambda: c.get("/providers/Microsoft.Authorization/roleDefinitions")),
        output,
        ROLE_COLUMNS,
    )


def _authz_path(scope: str) -> str:
    scope = "/" + scope.strip().strip("/") if scope.strip("/") else ""
    return f"{scope}/providers/Microsoft.Authorization"


@role_asg_app.command("create")
def role_assignment_create(
    assignee: Annotated[str, typer.Option(help="Principal name, id, client id or vault:NAME.")],
    role: Annotated[str, typer.Option(help='Role name, e.g. "Backup Operator".')],
    scope: Annotated[str, typer.Option(help="Resource id (or / for everything).")],
    output: OutputOpt = Output.table,
) -> None:
    """Give a principal a role at a scope (inherited by everything below it)."""
    import uuid

    c = _client()
    body = {"properties": {"roleDefinitionId": role, "principalId": assignee}}
    data = _run(lambda: c.put(f"{_authz_path(scope)}/roleAssignments/{uuid.uuid4()}", body))
    show(data, output, ASSIGNMENT_COLUMNS)


@role_asg_app.command("list")
def role_assignment_list(
    scope: Annotated[str, typer.Option(help="Resource id; default: all.")] = "/",
    assignee: Annotated[str | None, typer.Option(help="Only this principal.")] = None,
    output: OutputOpt = Output.table,
) -> None:
    """List role assignments that apply at or below a scope."""
    c = _client()
    params = {"$filter": f"assignedTo('{assignee}')"} if assignee else {}
    show(
        _run(lambda: c.get(f"{_authz_path(scope)}/roleAssignments", **params)),
        output,
        ASSIGNMENT_COLUMNS,
    )


@role_asg_app.command("delete")
def role_assignment_delete(
    id_: Annotated[str | None, typer.Option("--id", help="Assignment id (name).")] = None,
    assignee: Annotated[str | None, typer.Option(help="With --role and --scope.")] = None,
    role: Annotated[str | None, typer.Option()] = None,
    scope: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Delete an assignment by id, or by assignee + role + scope."""
    c = _client()

    def body() -> int:
        if id_:
            # a full assignment id deletes at its own scope; a bare name at the root
            path = (
                id_ if "/" in id_ else f"/providers/Microsoft.Authorization/roleAssignments/{id_}"
            )
            c.delete(path)
            return 1
        if not (assignee and role and scope):
            raise ApiError("BadParameter", "Give --id, or --assignee, --role and --scope.")
        found = c.get(
            f"{_authz_path(scope)}/roleAssignments",
            **{"$filter": f"assignedTo('{assignee}') and atScope()"},
        )["value"]
        matches = [
            a for a in found if a["properties"]["roleDefinitionName"].lower() == role.lower()
        ]
        for a in matches:
            c.delete(f"{_authz_path(a['properties']['scope'])}/roleAssignments/{a['name']}")
        return len(matches)

    count = _run(body)
    out.print(f"Deleted {count} role assignment(s).")


@audit_app.command("list")
def audit_list(
    since: Annotated[str | None, typer.Option(help="ISO time, e.g. 2026-11-25T00:00:00Z")] = None,
    outcome: Annotated[str | None, typer.Option(help="Succeeded, Failed or Denied")] = None,
    top: Annotated[int, typer.Option(help="At most this many events.")] = 100,
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
) -> None:
    """Writes and denied calls: who, what, where, when, outcome."""
    c = _client()
    parts = []
    if since:
        parts.append(f"eventTimestamp ge '{since}'")
    if outcome:
        parts.append(f"status eq '{outcome}'")
    params: dict[str, Any] = {"$top": top}
    if parts:
        params["$filter"] = " and ".join(parts)
    path = (
        f"/subscriptions/{subscription or c.default_subscription()}"
        "/providers/Microsoft.Insights/eventtypes/management/values"
    )
    show(
        _run(lambda: c.get(path, **params)),
        output,
        [
            ("Time", "eventTimestamp"),
            ("Caller", "caller"),
            ("Action", "authorization.action"),
            ("Scope", "authorization.scope"),
            ("Outcome", "status.value"),
            ("HTTP", "subStatus.value"),
        ],
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
