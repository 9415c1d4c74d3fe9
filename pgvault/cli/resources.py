"""Resources the vault uses: PostgreSQL servers, key vaults and secrets, storage accounts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from pgvault.cli.common import Call, NameOpt, command, read_secret
from pgvault.cli.output import Columns

server_app = typer.Typer(no_args_is_help=True, help="Registered PostgreSQL servers.")
kv_app = typer.Typer(no_args_is_help=True, help="Key vaults holding connection strings.")
secret_app = typer.Typer(no_args_is_help=True, help="Secrets in a key vault.")
sa_app = typer.Typer(no_args_is_help=True, help="Storage accounts for restore as files.")
container_app = typer.Typer(no_args_is_help=True, help="Containers in a storage account.")

RegionOpt = Annotated[str, typer.Option("--region", "-l")]


# -- servers --------------------------------------------------------------------------------

SERVERS = "Microsoft.DBforPostgreSQL/servers"
SERVER_COLUMNS: Columns = (
    ("Name", "name"),
    ("Host", "properties.fullyQualifiedDomainName"),
    ("Port", "properties.port"),
    ("SSL", "properties.sslMode"),
    ("Region", "location"),
    ("Id", "id"),
)


@command(server_app, "add", columns=SERVER_COLUMNS)
def server_add(
    call: Call,
    name: NameOpt,
    host: Annotated[str, typer.Option()],
    region: RegionOpt,
    port: Annotated[int, typer.Option()] = 5432,
    sslmode: Annotated[
        str,
        typer.Option(
            "--sslmode", help="prefer, require, verify-ca or verify-full (needs --ssl-root-cert)."
        ),
    ] = "prefer",
    ssl_root_cert: Annotated[
        Path | None,
        typer.Option(
            "--ssl-root-cert",
            exists=True,
            dir_okay=False,
            readable=True,
            help="PEM file of the root certificate that signed the server's certificate.",
        ),
    ] = None,
    password_authentication: Annotated[
        str,
        typer.Option(
            "--password-authentication",
            help="Password exchange the server may ask for: scram-sha-256, or md5 (weaker).",
        ),
    ] = "scram-sha-256",
) -> Any:
    """Register (or update) a PostgreSQL server: its address and region, and how pgvault
    connects (credentials go in a key vault, and a secret's password goes only to the
    address the secret names)."""
    props: dict[str, Any] = {
        "fullyQualifiedDomainName": host,
        "port": port,
        "sslMode": sslmode,
        "passwordAuthentication": password_authentication,
    }
    if ssl_root_cert is not None:
        props["sslRootCertificate"] = ssl_root_cert.read_text(encoding="utf-8")
    body = {"location": region, "properties": props}
    return call.client.put(f"{call.provider(SERVERS)}/{name}", body)


@command(server_app, "list", columns=SERVER_COLUMNS)
def server_list(call: Call) -> Any:
    """List registered servers."""
    return call.client.get(call.provider(SERVERS))


@command(server_app, "show", columns=SERVER_COLUMNS)
def server_show(call: Call, name: NameOpt) -> Any:
    """Show one registered server."""
    return call.client.get(f"{call.provider(SERVERS)}/{name}")


# -- key vaults -----------------------------------------------------------------------------

KEY_VAULTS = "Microsoft.KeyVault/vaults"
KV_COLUMNS: Columns = (("Name", "name"), ("Region", "location"), ("Id", "id"))


@command(kv_app, "create", columns=KV_COLUMNS)
def keyvault_create(call: Call, name: NameOpt, region: RegionOpt) -> Any:
    """Create a key vault."""
    return call.client.put(f"{call.provider(KEY_VAULTS)}/{name}", {"location": region})


@command(kv_app, "list", columns=KV_COLUMNS)
def keyvault_list(call: Call) -> Any:
    """List key vaults."""
    return call.client.get(call.provider(KEY_VAULTS))


KvNameOpt = Annotated[str, typer.Option("--vault-name")]
SECRET_COLUMNS: Columns = (
    ("Name", "name"),
    ("Secret URI", "properties.secretUri"),
    ("Version URI", "properties.secretUriWithVersion"),
)


@command(secret_app, "set", columns=SECRET_COLUMNS)
def secret_set(call: Call, vault_name: KvNameOpt, name: NameOpt) -> Any:
    """Store a new secret version; the value is read from stdin (or a hidden prompt)."""
    value = read_secret("Secret value")
    path = f"{call.provider(KEY_VAULTS)}/{vault_name}/secrets/{name}"
    return call.client.put(path, {"properties": {"value": value}})


@command(secret_app, "list", columns=SECRET_COLUMNS)
def secret_list(call: Call, vault_name: KvNameOpt) -> Any:
    """List secrets (URIs only; values are never shown)."""
    return call.client.get(f"{call.provider(KEY_VAULTS)}/{vault_name}/secrets")


# -- storage accounts -----------------------------------------------------------------------

STORAGE_ACCOUNTS = "Microsoft.Storage/storageAccounts"
SA_COLUMNS: Columns = (
    ("Name", "name"),
    ("Kind", "properties.backend.type"),
    ("Region", "location"),
    ("Blob endpoint", "properties.primaryEndpoints.blob"),
)


@command(sa_app, "create", columns=SA_COLUMNS)
def storage_account_create(
    call: Call,
    name: NameOpt,
    region: RegionOpt,
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
) -> Any:
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
    body = {"location": region, "properties": {"backend": backend}}
    return call.client.put(f"{call.provider(STORAGE_ACCOUNTS)}/{name}", body)


@command(sa_app, "list", columns=SA_COLUMNS)
def storage_account_list(call: Call) -> Any:
    """List storage accounts."""
    return call.client.get(call.provider(STORAGE_ACCOUNTS))


AccountOpt = Annotated[str, typer.Option("--account-name")]


def _containers(call: Call, account_name: str) -> str:
    return f"{call.provider(STORAGE_ACCOUNTS)}/{account_name}/blobServices/default/containers"


@command(
    container_app, "create", columns=(("Name", "name"), ("URL", "properties.url"), ("Id", "id"))
)
def container_create(call: Call, account_name: AccountOpt, name: NameOpt) -> Any:
    """Create a container; its URL is what `restore files --container` takes."""
    return call.client.put(f"{_containers(call, account_name)}/{name}", {})


@command(container_app, "list", columns=(("Name", "name"), ("URL", "properties.url")))
def container_list(call: Call, account_name: AccountOpt) -> Any:
    """List containers of a storage account."""
    return call.client.get(_containers(call, account_name))
