"""Bodies of the ARM resources around a vault: resource groups, servers, key vaults, storage."""

from __future__ import annotations

from pydantic import ConfigDict, JsonValue, StrictInt

from pgvault.errors import BadRequest
from pgvault.schemas.base import INVALID, AzureModel
from pgvault.servers import Connection


class GroupBody(AzureModel):
    """PUT of a resource group (eastus when no location is given)."""

    location: str | None = None


class ServerProperties(AzureModel):
    fully_qualified_domain_name: str | None = None
    host: str | None = None  # pgvault's own name for it; Azure's is fullyQualifiedDomainName
    port: StrictInt = 5432
    #: libpq sslmode: prefer (default), require, verify-ca, verify-full.
    ssl_mode: str | None = None
    #: PEM root certificate that verifies the server (verify-ca / verify-full).
    ssl_root_certificate: str | None = None
    #: The password exchange the server may ask for: scram-sha-256 (default) or md5.
    password_authentication: str | None = None


class ServerBody(AzureModel):
    """PUT of a PostgreSQL server: where pgvault reaches it, and how (TLS, password exchange)."""

    location: str
    properties: ServerProperties | None = None

    def connection(self) -> Connection:
        props = self.properties
        if props is None:
            return Connection()
        return Connection(
            sslmode=props.ssl_mode or "prefer",
            ssl_root_cert=props.ssl_root_certificate or None,
            password_authentication=props.password_authentication or "scram-sha-256",
        )

    @property
    def host(self) -> str:
        props = self.properties
        host = props and (props.fully_qualified_domain_name or props.host)
        if not host:
            raise BadRequest(
                "properties.fullyQualifiedDomainName (the host) is required.", code=INVALID
            )
        return host

    @property
    def port(self) -> int:
        return self.properties.port if self.properties else 5432


class KeyVaultBody(AzureModel):
    """PUT of a key vault."""

    location: str


class SecretProperties(AzureModel):
    value: str
    content_type: str | None = None


class SecretBody(AzureModel):
    """PUT of a secret (a connection string for a database login)."""

    properties: SecretProperties


class StorageBackend(AzureModel):
    """Where an account keeps its blobs: `type` (local, s3, azure, ...) and that backend's options.

    The options depend on the type and are checked by `pgvault.storage.accounts`.
    """

    model_config = ConfigDict(extra="allow")

    type: str | None = None

    def options(self) -> dict[str, JsonValue]:
        return dict(self.model_extra or {})


class StorageAccountProperties(AzureModel):
    backend: StorageBackend | None = None


class StorageAccountBody(AzureModel):
    """PUT of a storage account."""

    location: str
    properties: StorageAccountProperties | None = None

    @property
    def backend(self) -> StorageBackend:
        props = self.properties
        return (props.backend if props else None) or StorageBackend()


class ContainerBody(AzureModel):
    """PUT of a blob container; its properties (public access, metadata) are not kept."""

    properties: dict[str, JsonValue] | None = None
