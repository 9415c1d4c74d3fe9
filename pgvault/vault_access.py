"""What a vault's managed identity must hold before it touches a server, a secret or a container.

The vault's work is authorised against its identity, not the user who clicked, as
in Azure. Each missing grant becomes a user error with Azure's code and the exact
`pgvault role assignment create ...` command that fixes it.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from pgvault import arm, rbac, secrets, servers, vaults
from pgvault.errors import Code, UserError
from pgvault.storage import accounts


def _missing(grant: rbac.Grant, code: Code, what: str) -> UserError:
    return UserError(
        f"The vault's managed identity ({grant.assignee}) lacks {what}.",
        code=code,
        recommended_action=grant.command(),
        target=grant.scope,
    )


def on_server(s: Session, vault: vaults.Vault, server: servers.Server) -> list[UserError]:
    """Reader (or PostgreSQL Backup Target) on the server."""
    if rbac.is_allowed(s, vault.principal_id, rbac.SERVER_READ, server.arm_id):
        return []
    grant = rbac.Grant("Reader", server.arm_id, vault.principal_id, rbac.SERVER_READ)
    return [
        _missing(
            grant,
            Code.UserErrorMSIMissingPermissions,
            f"Reader on PostgreSQL server {server.name!r}",
        )
    ]


def on_secret(s: Session, vault: vaults.Vault, uri: str) -> list[UserError]:
    """Key Vault Secrets User on the key vault (or the secret) the URI names."""
    kv, ref = secrets.locate(s, uri)
    scope = f"{kv.arm_id}/secrets/{ref.name}"
    if rbac.is_allowed(s, vault.principal_id, rbac.GET_SECRET, scope, data=True):
        return []
    grant = rbac.Grant(
        "Key Vault Secrets User", kv.arm_id, vault.principal_id, rbac.GET_SECRET, data=True
    )
    return [
        _missing(
            grant,
            Code.UserErrorMissingPermissionsOnSecretStore,
            f"Key Vault Secrets User on key vault {kv.name!r}",
        )
    ]


def on_container(
    s: Session, vault: vaults.Vault, account: accounts.StorageAccount, container: str
) -> list[UserError]:
    """Storage Blob Data Contributor on the container (or its account)."""

    scope = arm.container_id(
        account.subscription_id, account.resource_group, account.name, container
    )
    if rbac.is_allowed(s, vault.principal_id, rbac.BLOB_WRITE, scope, data=True):
        return []
    grant = rbac.Grant(
        "Storage Blob Data Contributor", scope, vault.principal_id, rbac.BLOB_WRITE, data=True
    )
    return [
        _missing(
            grant,
            Code.UserErrorContainerNotAccessible,
            f"Storage Blob Data Contributor on container {container!r}",
        )
    ]
