"""The service layer: every operation the API, the CLI (through the API) and the portal use.

Each method is one short transaction over the domain modules. Methods return
domain objects (or small views of them); shaping JSON is the API's job.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from pgvault import (
    arm,
    backups,
    housekeeping,
    identity,
    instances,
    jobs,
    policies,
    rbac,
    recovery_points,
    rehydration,
    restore,
    secrets,
    servers,
    tenancy,
    vaults,
)
from pgvault.access import AccessService
from pgvault.context import Context
from pgvault.errors import BadRequest, Code, Conflict, NotFound, PgVaultError, UserError
from pgvault.storage import accounts
from pgvault.workers import WorkerPool

log = logging.getLogger("pgvault.service")
ADMIN = "admin"


@dataclass(frozen=True)
class InstanceView:
    instance: instances.Instance
    vault: vaults.Vault
    server: servers.Server
    policy: policies.Policy


@dataclass(frozen=True)
class JobView:
    job: jobs.Job
    vault: vaults.Vault
    instance: instances.Instance | None
    server: servers.Server | None
    policy: policies.Policy | None


@dataclass(frozen=True)
class InstanceSpec:
    """What a backup-instance PUT asks for, parsed from Azure's body."""

    database_id: str
    policy_id: str
    secret_uri: str
    friendly_name: str | None = None


class Service:
    """Operations over vaults, instances, recovery points, restores and jobs."""

    def __init__(self, ctx: Context, pool: WorkerPool | None = None) -> None:
        self.ctx = ctx
        self.pool = pool
        self.access = AccessService(ctx)

    # -- start-up and identity -------------------------------------------------------------

    def bootstrap(self) -> str | None:
        """Migrate, create the default subscription/resource group and the admin principal.

        Returns a note for the console on first start (never the secret itself: the
        admin's client credentials go to a 0600 file under PGVAULT_HOME).
        """
        self.ctx.db.migrate()
        now = self.ctx.clock.now()
        try:
            with self.ctx.db.session() as s:
                tenancy.ensure_default(s, now)
                admin = s.scalar(select(identity.Principal).where(identity.Principal.name == ADMIN))
                if admin is not None:
                    return None  # another process (or an earlier start) made it
                principal, secret = identity.create_principal(
                    s, ADMIN, identity.SERVICE_PRINCIPAL, now
                )
                owner = rbac.find_role(s, "Owner")
                rbac.assign(
                    s,
                    scope="/",
                    role=owner,
                    principal_id=principal.id,
                    principal_type=principal.type,
                    created_by=None,
                    now=now,
                )
                self._write_credentials(principal.client_id or "", secret or "")
        except IntegrityError:
            return None  # a concurrent first start won the race
        return (
            f"Created the admin principal; its client credentials are in "
            f"{self.ctx.settings.credentials_file} (mode 0600). "
            "Get a bearer token with: pgvault auth token"
        )

    def _write_credentials(self, client_id: str, secret: str) -> None:
        path = self.ctx.settings.credentials_file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"clientId": client_id, "clientSecret": secret}, f)
        os.replace(tmp, path)

    # -- tenancy ---------------------------------------------------------------------------

    def list_subscriptions(self) -> list[tenancy.Subscription]:
        with self.ctx.db.session() as s:
            return tenancy.list_subscriptions(s)

    def put_group(self, sub: str, rg: str, location: str) -> tenancy.ResourceGroup:
        with self.ctx.db.session() as s:
            return tenancy.create_group(s, sub, rg, location, self.ctx.clock.now())

    def get_group(self, sub: str, rg: str) -> tenancy.ResourceGroup:
        with self.ctx.db.session() as s:
            return tenancy.require_group(s, sub, rg)

    # -- servers ---------------------------------------------------------------------------

    def put_server(
        self, sub: str, rg: str, name: str, host: str, port: int, location: str
    ) -> servers.Server:
        with self.ctx.db.session() as s:
            return servers.upsert(s, sub, rg, name, host, port, location, self.ctx.clock.now())

    def get_server(self, sub: str, rg: str, name: str) -> servers.Server:
        with self.ctx.db.session() as s:
            return servers.get(s, sub, rg, name)

    def list_servers(self, sub: str, rg: str | None) -> list[servers.Server]:
        with self.ctx.db.session() as s:
            return servers.list_servers(s, sub, rg)

    def delete_server(self, sub: str, rg: str, name: str) -> None:
        with self.ctx.db.session() as s:
            server = servers.get(s, sub, rg, name)
            used = s.scalar(select(func.count()).where(instances.Instance.server_id == server.id))
            if used:
                raise Conflict(
                    f"Server {name!r} has protected databases; stop protection first.",
                    code=Code.UserErrorServerInUse,
                )
            s.delete(server)

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
            try:
                return kv, secrets.get_secret_version(s, kv, name, None)
            except UserError as exc:
                raise NotFound(exc.message, code=Code.SecretNotFound) from None

    def list_secrets(
        self, sub: str, rg: str, kv_name: str
    ) -> tuple[secrets.KeyVault, list[secrets.SecretVersion]]:
        with self.ctx.db.session() as s:
            kv = secrets.get_vault(s, sub, rg, kv_name)
            return kv, secrets.list_secrets(s, kv)

    # -- storage accounts ------------------------------------------------------------------

    def put_storage_account(
        self, sub: str, rg: str, name: str, location: str, kind: str, backend: dict[str, Any]
    ) -> accounts.StorageAccount:
        with self.ctx.db.session() as s:
            return accounts.create_account(
                s, self.ctx.cipher, sub, rg, name, location, kind, backend, self.ctx.clock.now()
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
            row = accounts.create_container(s, self.ctx.cipher, account, name, self.ctx.clock.now())
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

    # -- vaults and policies ---------------------------------------------------------------

    def put_vault(
        self,
        sub: str,
        rg: str,
        name: str,
        location: str,
        properties: dict[str, Any],
        tags: dict[str, Any],
    ) -> tuple[vaults.Vault, bool]:
        with self.ctx.db.session() as s:
            return vaults.create_or_update(
                s, sub, rg, name, location, properties, tags, self.ctx.clock.now()
            )

    def get_vault(self, sub: str, rg: str, name: str) -> vaults.Vault:
        with self.ctx.db.session() as s:
            return vaults.get(s, sub, rg, name)

    def list_vaults(self, sub: str, rg: str | None) -> list[vaults.Vault]:
        with self.ctx.db.session() as s:
            return vaults.list_vaults(s, sub, rg)

    def delete_vault(self, sub: str, rg: str, name: str) -> None:
        """Delete an empty vault with its policies and its managed identity (and its roles)."""
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, name)
            count = len(instances.list_instances(s, vault.id)) + len(
                instances.list_instances(s, vault.id, deleted=True)
            )
            vaults.delete(s, vault, count)
            for policy in policies.list_policies(s, vault.id):
                s.delete(policy)
            for assignment in rbac.assignments_for(s, vault.principal_id):
                s.delete(assignment)
            identity_row = s.get(identity.Principal, vault.principal_id)
            if identity_row is not None:
                s.delete(identity_row)

    def put_policy(
        self, sub: str, rg: str, vault_name: str, name: str, properties: dict[str, Any]
    ) -> tuple[vaults.Vault, policies.Policy]:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            policy = policies.put(s, vault.id, name, properties, self.ctx.clock.now())
            users = [
                i.id for i in instances.list_instances(s, vault.id) if i.policy_id == policy.id
            ]
        for inst_id in users:  # a changed policy re-applies retention to existing points
            housekeeping.reapply_policy(self.ctx, inst_id)
        return vault, policy

    def get_policy(
        self, sub: str, rg: str, vault_name: str, name: str
    ) -> tuple[vaults.Vault, policies.Policy]:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            return vault, policies.get(s, vault.id, name)

    def list_policies(
        self, sub: str, rg: str, vault_name: str
    ) -> tuple[vaults.Vault, list[policies.Policy]]:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            return vault, policies.list_policies(s, vault.id)

    def delete_policy(self, sub: str, rg: str, vault_name: str, name: str) -> None:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            policy = policies.get(s, vault.id, name)
            used = s.scalar(select(func.count()).where(instances.Instance.policy_id == policy.id))
            policies.delete(s, policy, int(used or 0))

    # -- backup instances ------------------------------------------------------------------

    def _view(self, s: Any, inst: instances.Instance) -> InstanceView:
        vault = s.get(vaults.Vault, inst.vault_id)
        server = s.get(servers.Server, inst.server_id)
        policy = s.get(policies.Policy, inst.policy_id)
        return InstanceView(inst, vault, server, policy)

    def _resolve_spec(
        self, s: Any, vault: vaults.Vault, spec: InstanceSpec
    ) -> tuple[servers.Server, str, policies.Policy]:
        rid = arm.parse(spec.database_id)
        database = rid.name_of("databases")
        if not database:
            raise BadRequest(
                f"{spec.database_id!r} is not a database id: expected "
                "'.../Microsoft.DBforPostgreSQL/servers/SERVER/databases/DB'.",
                code=Code.InvalidResourceId,
                target="dataSourceInfo.resourceID",
            )
        instances.check_database_name(database)
        server = servers.get_by_id(s, spec.database_id)
        if server.location != vault.location:
            raise UserError(
                f"Server {server.name!r} is in {server.location}; vault {vault.name!r} protects "
                f"only servers in {vault.location}.",
                code=Code.UserErrorDatasourceRegionMismatch,
                recommended_action="Protect the database from a vault in the server's region.",
            )
        policy = policies.get_by_id(s, vault.id, spec.policy_id)
        secrets.parse_secret_uri(spec.secret_uri)
        return server, database, policy

    def validate_for_backup(self, sub: str, rg: str, vault_name: str, spec: InstanceSpec) -> None:
        """The checks of validateForBackup: not yet protected, secret usable, login, privileges."""
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            server, database, _ = self._resolve_spec(s, vault, spec)
            existing = instances.protecting(s, server.database_id(database))
            if existing is not None:
                raise UserError(
                    f"Database {database!r} on server {server.name!r} is already protected "
                    f"(backup instance {existing.name!r}).",
                    code=Code.UserErrorDppDatasourceAlreadyProtected,
                    recommended_action="Stop protection there first, or use that instance.",
                )
            backups.check_source(self.ctx, s, vault, server, database, spec.secret_uri)

    def put_instance(
        self, sub: str, rg: str, vault_name: str, name: str, spec: InstanceSpec
    ) -> InstanceView:
        """Protect a database (PUT); on an existing instance, change its policy or secret."""
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            server, database, policy = self._resolve_spec(s, vault, spec)
            datasource = server.database_id(database)
            existing = instances.find(s, vault.id, name)
            if existing is not None:
                if existing.datasource_key != datasource.lower():
                    raise Conflict(
                        f"Backup instance {name!r} protects another database; a backup "
                        "instance's data source cannot change.",
                        code=Code.UserErrorDatasourceCannotChange,
                    )
                policy_changed = existing.policy_id != policy.id
                existing.policy_id, existing.secret_uri = policy.id, spec.secret_uri
                view = self._view(s, existing)
            else:
                policy_changed = False
                other = instances.protecting(s, datasource)
                if other is not None:
                    raise UserError(
                        f"Database {database!r} on server {server.name!r} is already protected "
                        f"(backup instance {other.name!r}).",
                        code=Code.UserErrorDppDatasourceAlreadyProtected,
                        recommended_action="A database can be protected by one vault only.",
                    )
                inst = instances.create(
                    s,
                    vault.id,
                    name,
                    server.id,
                    database,
                    datasource,
                    policy.id,
                    spec.secret_uri,
                    self.ctx.clock.now(),
                )
                view = self._view(s, inst)
        if policy_changed:  # a new policy re-applies retention to the existing points
            housekeeping.reapply_policy(self.ctx, view.instance.id)
        return view

    def get_instance(self, sub: str, rg: str, vault_name: str, name: str) -> InstanceView:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            return self._view(s, instances.get(s, vault.id, name))

    def list_instances(self, sub: str, rg: str, vault_name: str) -> list[InstanceView]:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            return [self._view(s, i) for i in instances.list_instances(s, vault.id)]

    def delete_instance(self, sub: str, rg: str, vault_name: str, name: str) -> None:
        """Soft-delete (kept for the vault's soft-delete days, then purged) or delete now.

        Deleting now is refused on an immutable vault while unexpired points remain.
        """
        now = self.ctx.clock.now()
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            inst = instances.get(s, vault.id, name)
            if jobs.running_backup(s, inst.id):
                raise Conflict(
                    "A backup of this instance is running; wait for it to finish.",
                    code=Code.UserErrorOperationInProgress,
                )
            days = vaults.soft_delete_days(vault)
            points = recovery_points.list_points(s, inst.id)
            if (
                days is None
                and housekeeping.immutable(vault.properties)
                and any(p.expires_at is None or p.expires_at > now for p in points)
            ):
                raise Conflict(
                    f"Vault {vault.name!r} is immutable: instance {name!r} still has recovery "
                    "points that have not expired, and deleting it would lose them early.",
                    code=Code.UserErrorOperationBlockedByImmutability,
                    recommended_action="Stop protection and retain data instead, or wait until "
                    "the points expire.",
                )
            inst.protection_state = instances.SOFT_DELETED
            inst.deleted_at = now
            inst.purge_at = now + timedelta(days=days or 0)
        if days is None:
            housekeeping.purge_instances(self.ctx, now)

    def protection_action(
        self, sub: str, rg: str, vault_name: str, name: str, action: str
    ) -> InstanceView:
        """stopProtection, suspendBackups, resumeProtection or resumeBackups."""
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            inst = instances.get(s, vault.id, name)
            instances.transition(inst, action)
            if action.startswith("resume"):
                inst.last_slot_at = self.ctx.clock.now()  # no catch-up for the paused time
            view = self._view(s, inst)
        if action.startswith("resume"):
            housekeeping.reapply_policy(self.ctx, view.instance.id)
        return view

    def list_deleted_instances(self, sub: str, rg: str, vault_name: str) -> list[InstanceView]:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            return [self._view(s, i) for i in instances.list_instances(s, vault.id, deleted=True)]

    def get_deleted_instance(self, sub: str, rg: str, vault_name: str, name: str) -> InstanceView:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            return self._view(s, instances.get_deleted(s, vault.id, name))

    def undelete_instance(self, sub: str, rg: str, vault_name: str, name: str) -> InstanceView:
        """Bring a soft-deleted instance back, protection stopped and data retained."""
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            inst = instances.get_deleted(s, vault.id, name)
            if instances.find(s, vault.id, name) is not None:
                raise Conflict(f"A live instance named {name!r} exists.", code=Code.Conflict)
            inst.protection_state = instances.PROTECTION_STOPPED
            inst.deleted_at = inst.purge_at = None
            return self._view(s, inst)

    # -- backup, recovery points, restore --------------------------------------------------

    def adhoc_backup(
        self, sub: str, rg: str, vault_name: str, name: str, rule: str | None, tag: str | None
    ) -> jobs.Job:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            inst = instances.get(s, vault.id, name)
            job = backups.queue(s, vault, inst, self.ctx.clock.now(), rule, tag)
        self._notify()
        return job

    def list_points(
        self,
        sub: str,
        rg: str,
        vault_name: str,
        name: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> tuple[InstanceView, list[recovery_points.RecoveryPoint]]:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            inst = instances.get(s, vault.id, name)
            return self._view(s, inst), recovery_points.list_points(s, inst.id, start, end)

    def get_point(
        self, sub: str, rg: str, vault_name: str, name: str, point_id: str
    ) -> tuple[InstanceView, recovery_points.RecoveryPoint]:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            inst = instances.get(s, vault.id, name)
            return self._view(s, inst), recovery_points.get(s, inst.id, point_id)

    def rehydrate(
        self,
        sub: str,
        rg: str,
        vault_name: str,
        name: str,
        point_id: str,
        priority: str | None,
        duration: str | None,
    ) -> jobs.Job:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            inst = instances.get(s, vault.id, name)
            job = rehydration.queue(self.ctx, s, vault.id, inst.id, point_id, priority, duration)
        self._notify()
        return job

    def validate_restore(
        self, sub: str, rg: str, vault_name: str, name: str, req: restore.RestoreRequest
    ) -> None:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            inst = instances.get(s, vault.id, name)
            restore.validate(self.ctx, s, vault, inst, req)

    def trigger_restore(
        self, sub: str, rg: str, vault_name: str, name: str, req: restore.RestoreRequest
    ) -> jobs.Job:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            inst = instances.get(s, vault.id, name)
            job = restore.queue(self.ctx, s, vault, inst, req)
        self._notify()
        return job

    def _notify(self) -> None:
        if self.pool is not None:
            self.pool.notify()

    # -- jobs and operations ---------------------------------------------------------------

    def _job_view(self, s: Any, job: jobs.Job) -> JobView:
        vault = s.get(vaults.Vault, job.vault_id)
        inst = s.get(instances.Instance, job.instance_id) if job.instance_id else None
        server = s.get(servers.Server, inst.server_id) if inst else None
        policy = s.get(policies.Policy, inst.policy_id) if inst else None
        return JobView(job, vault, inst, server, policy)

    def list_jobs(
        self, sub: str, rg: str | None, vault_name: str | None, limit: int = 200, offset: int = 0
    ) -> list[JobView]:
        with self.ctx.db.session() as s:
            if vault_name and rg:
                ids = [vaults.get(s, sub, rg, vault_name).id]
            else:
                ids = [v.id for v in vaults.list_vaults(s, sub, rg)]
            return [self._job_view(s, j) for j in jobs.list_jobs(s, ids, limit, offset)]

    def get_job(self, sub: str, rg: str, vault_name: str, job_id: str) -> JobView:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            return self._job_view(s, jobs.get(s, job_id, vault.id))

    def record_operation(
        self,
        *,
        job_id: str | None = None,
        resource_id: str | None = None,
        error: PgVaultError | None = None,
    ) -> jobs.Operation:
        with self.ctx.db.session() as s:
            return jobs.new_operation(
                s, self.ctx.clock.now(), job_id=job_id, resource_id=resource_id, error=error
            )

    def get_operation(self, op_id: str) -> tuple[jobs.Operation, JobView | None]:
        with self.ctx.db.session() as s:
            op = jobs.get_operation(s, op_id)
            view = self._job_view(s, jobs.get(s, op.job_id)) if op.job_id else None
            return op, view
