"""Resources the vault uses: PostgreSQL servers, key vaults and secrets, storage accounts."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from pgvault.cli.client import Client
from pgvault.cli.common import OutputOpt, RgOpt, SubOpt, client, read_secret, rg_path, run
from pgvault.cli.output import Output, show

server_app = typer.Typer(no_args_is_help=True, help="Registered PostgreSQL servers.")
kv_app = typer.Typer(no_args_is_help=True, help="Key vaults holding connection strings.")
secret_app = typer.Typer(no_args_is_help=True, help="Secrets in a key vault.")
sa_app = typer.Typer(no_args_is_help=True, help="Storage accounts for restore as files.")
container_app = typer.Typer(no_args_is_help=True, help="Containers in a storage account.")


# -- servers --------------------------------------------------------------------------------

SERVER_COLUMNS = [
    ("Name", "name"),
    ("Host", "properties.fullyQualifiedDomainName"),
    ("Port", "properties.port"),
    ("Region", "location"),
    ("Id", "id"),
]


def _server_path(c: Client, sub: str | None, rg: str) -> str:
    return f"{rg_path(c, sub, rg)}/providers/Microsoft.DBforPostgreSQL/servers"


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
    c = client()
    body = {"location": region, "properties": {"fullyQualifiedDomainName": host, "port": port}}
    data = run(lambda: c.put(f"{_server_path(c, subscription, resource_group)}/{name}", body))
    show(data, output, SERVER_COLUMNS)


@server_app.command("list")
def server_list(
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """List registered servers."""
    c = client()
    show(run(lambda: c.get(_server_path(c, subscription, resource_group))), output, SERVER_COLUMNS)


@server_app.command("show")
def server_show(
    name: Annotated[str, typer.Option("--name", "-n")],
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Show one registered server."""
    c = client()
    data = run(lambda: c.get(f"{_server_path(c, subscription, resource_group)}/{name}"))
    show(data, output, SERVER_COLUMNS)


# -- key vaults -----------------------------------------------------------------------------


def _kv_path(c: Client, sub: str | None, rg: str) -> str:
    return f"{rg_path(c, sub, rg)}/providers/Microsoft.KeyVault/vaults"


@kv_app.command("create")
def keyvault_create(
    name: Annotated[str, typer.Option("--name", "-n")],
    region: Annotated[str, typer.Option("--region", "-l")],
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Create a key vault."""
    c = client()
    data = run(
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
    c = client()
    show(
        run(lambda: c.get(_kv_path(c, subscription, resource_group))),
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
    c = client()
    value = read_secret("Secret value")
    path = f"{_kv_path(c, subscription, resource_group)}/{vault_name}/secrets/{name}"
    data = run(lambda: c.put(path, {"properties": {"value": value}}))
    show(data, output, SECRET_COLUMNS)


@secret_app.command("list")
def secret_list(
    vault_name: Annotated[str, typer.Option("--vault-name")],
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """List secrets (URIs only; values are never shown)."""
    c = client()
    path = f"{_kv_path(c, subscription, resource_group)}/{vault_name}/secrets"
    show(run(lambda: c.get(path)), output, SECRET_COLUMNS)


# -- storage accounts -----------------------------------------------------------------------


def _sa_path(c: Client, sub: str | None, rg: str) -> str:
    return f"{rg_path(c, sub, rg)}/providers/Microsoft.Storage/storageAccounts"


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
        backend["secretAccessKey" if kind == "s3" else "accountKey"] = read_secret("Key")
    c = client()
    data = run(
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
    c = client()
    show(run(lambda: c.get(_sa_path(c, subscription, resource_group))), output, SA_COLUMNS)


@container_app.command("create")
def container_create(
    account_name: Annotated[str, typer.Option("--account-name")],
    name: Annotated[str, typer.Option("--name", "-n")],
    output: OutputOpt = Output.table,
    subscription: SubOpt = None,
    resource_group: RgOpt = "default",
) -> None:
    """Create a container; its URL is what `restore files --container` takes."""
    c = client()
    path = (
        f"{_sa_path(c, subscription, resource_group)}/{account_name}"
        f"/blobServices/default/containers/{name}"
    )
    show(
        run(lambda: c.put(path, {})),
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
    c = client()
    path = f"{_sa_path(c, subscription, resource_group)}/{account_name}/blobServices/default/containers"
    show(run(lambda: c.get(path)), output, [("Name", "name"), ("URL", "properties.url")])
