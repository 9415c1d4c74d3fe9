"""Resources the vault works with: subscriptions and resource groups, PostgreSQL servers,
key vaults and their secrets, storage accounts and their containers."""

from __future__ import annotations

from typing import Any

from pgvault import audit, instances, secrets, servers, tenancy
from pgvault.errors import Code, NotFound, UserError
from pgvault.identity import Caller
from pgvault.services.base import ServiceBase
from pgvault.storage import accounts


class ResourceService(ServiceBase):
    """Register and look up what backups read from and restores write to."""

    # -- tenancy ---------------------------------------------------------------------------

    def list_subscriptions(self) -> list[tenancy.Subscription]:
        with self.ctx.db.session() as s:
            return tenancy.list_subscriptions(s)

    def get_subscription(self, sub: str) -> tenancy.Subscription:
        with self.ctx.db.session() as s:
            return tenancy.get_subscription(s, sub)

    def put_group(self, sub: str, rg: str, location: str) -> tenancy.ResourceGroup:
        with self.ctx.db.session() as s:
            return tenancy.create_group(s, sub, rg, location, self.ctx.clock.now())

    def get_group(self, sub: str, rg: str) -> tenancy.ResourceGroup:
        with self.ctx.db.session() as s:
            return tenancy.require_group(s, sub, rg)

    # -- servers ---------------------------------------------------------------------------

    def put_server(
        self,
        sub: str,
        rg: str,
        name: str,
        host: str,
        port: int,
        location: str,
        connection: servers.Connection | None = None,
        caller: Caller | None = None,
    ) -> servers.Server:
        """Register or update a server. A change of its address or of how pgvault connects
        (sslmode, root certificate, password exchange) is written to the audit log in the
        same transaction, old and new side by side. Nothing caches a validation: every
        check and job resolves the server's address and the secret afresh, and refuses a
        server whose address is not the one its secret names."""
        with self.ctx.db.session() as s:
            now = self.ctx.clock.now()
            server, changes = servers.upsert(
                s, sub, rg, name, host, port, location, now, connection
            )
            if changes:
                audit.record(
                    s,
                    at=now,
                    principal_id=caller.principal_id if caller else None,
                    principal_name=caller.name if caller else None,
                    action="Microsoft.DBforPostgreSQL/servers/write",
                    scope=server.arm_id,
                    method="PUT",
                    status=200,
                    error_code=None,
                    details={"changed": changes},
                )
            return server

    def get_server(self, sub: str, rg: str, name: str) -> servers.Server:
        with self.ctx.db.session() as s:
            return servers.get(s, sub, rg, name)

    def list_servers(self, sub: str, rg: str | None) -> list[servers.Server]:
        with self.ctx.db.session() as s:
            return servers.list_servers(s, sub, rg)

    def delete_server(self, sub: str, rg: str, name: str) -> None:
        """Unregister a server; refused while any instance protects one of its databases."""
        with self.ctx.db.session() as s:
            server = servers.get(s, sub, rg, name)
            servers.delete(s, server, instances.count_using_server(s, server.id))

    # -- key vaults ------------------------------------------------------------------------

    def put_keyvault(self, sub: str, rg: str, name: str, location: str) -> secrets.KeyVault:
        with self.ctx.db.session() as s:
            return secrets.create_vault(s, sub, rg, name, location, self.ctx.clock.now())

    def get_keyvault(self, sub: str, rg: str, name: str) -> secrets.KeyVault:
        with self.ctx.db.session() as s:
            return secrets.get_vault(s, sub, rg, name)

    def list_keyvaults(self, sub: str, rg: str | None) -> list[secrets.KeyVault]:
        with self.ctx.db.session() as s:
            return secrets.list_vaults(s, sub, rg)

    def delete_keyvault(self, sub: str, rg: str, name: str) -> None:
        with self.ctx.db.session() as s:
            secrets.delete_vault(s, secrets.get_vault(s, sub, rg, name))

    def put_secret(
        self, sub: str, rg: str, kv_name: str, name: str, value: str, content_type: str | None
    ) -> tuple[secrets.KeyVault, secrets.SecretVersion]:
        with self.ctx.db.session() as s:
            kv = secrets.get_vault(s, sub, rg, kv_name)
            row = secrets.set_secret(
                s, self.ctx.cipher, kv, name, value, self.ctx.clock.now(), content_type
            )
            return kv, row

    def get_secret(
        self, sub: str, rg: str, kv_name: str, name: str
    ) -> tuple[secrets.KeyVault, secrets.SecretVersion]:
        with self.ctx.db.session() as s:
            kv = secrets.get_vault(s, sub, rg, kv_name)
            return kv, secrets.get_latest(s, kv, name)

    def list_secrets(
        self, sub: str, rg: str, kv_name: str
    ) -> tuple[secrets.KeyVault, list[secrets.SecretVersion]]:
        with self.ctx.db.session() as s:
            kv = secrets.get_vault(s, sub, rg, kv_name)
            return kv, secrets.list_secrets(s, kv)

    # -- the key-vault data plane (what the Key Vault SDKs and az call) --------------------

    def data_plane_vault(self, kv_name: str) -> secrets.KeyVault:
        """A key vault by its global name (a data-plane host or path names only that)."""
        with self.ctx.db.session() as s:
            return secrets.by_name(s, kv_name)

    def data_plane_secrets(self, kv: secrets.KeyVault) -> list[secrets.SecretVersion]:
        with self.ctx.db.session() as s:
            return secrets.list_secrets(s, kv)

    def data_plane_secret(
        self, kv: secrets.KeyVault, name: str, version: str | None
    ) -> secrets.SecretVersion:
        with self.ctx.db.session() as s:
            try:
                return secrets.get_secret_version(s, kv, name, version)
            except UserError as exc:
                raise NotFound(exc.message, code=Code.SecretNotFound) from None

    def reveal_secret(self, kv: secrets.KeyVault, row: secrets.SecretVersion) -> str:
        """A secret's value, for a caller whose role grants getSecret (the API audits it)."""
        return secrets.decrypt(self.ctx.cipher, kv, row)

    # -- storage accounts ------------------------------------------------------------------

    def put_storage_account(
        self, sub: str, rg: str, name: str, location: str, kind: str, backend: dict[str, Any]
    ) -> accounts.StorageAccount:
        with self.ctx.db.session() as s:
            return accounts.create_account(
                s,
                self.ctx.cipher,
                sub,
                rg,
                name,
                location,
                kind,
                backend,
                self.ctx.clock.now(),
                self.ctx.storage_policy,
            )

    def get_storage_account(self, sub: str, rg: str, name: str) -> accounts.StorageAccount:
        with self.ctx.db.session() as s:
            return accounts.get_account(s, sub, rg, name)

    def list_storage_accounts(self, sub: str, rg: str | None) -> list[accounts.StorageAccount]:
        with self.ctx.db.session() as s:
            return accounts.list_accounts(s, sub, rg)

    def put_container(
        self, sub: str, rg: str, account_name: str, name: str
    ) -> tuple[accounts.StorageAccount, accounts.Container]:
        with self.ctx.db.session() as s:
            account = accounts.get_account(s, sub, rg, account_name)
            row = accounts.create_container(
                s, self.ctx.cipher, account, name, self.ctx.clock.now(), self.ctx.storage_policy
            )
            return account, row

    def get_container(
        self, sub: str, rg: str, account_name: str, name: str
    ) -> tuple[accounts.StorageAccount, accounts.Container]:
        with self.ctx.db.session() as s:
            account = accounts.get_account(s, sub, rg, account_name)
            return account, accounts.get_container(s, account, name)

    def list_containers(
        self, sub: str, rg: str, account_name: str
    ) -> tuple[accounts.StorageAccount, list[accounts.Container]]:
        with self.ctx.db.session() as s:
            account = accounts.get_account(s, sub, rg, account_name)
            return account, accounts.list_containers(s, account)
