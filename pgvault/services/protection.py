"""Protection: backup vaults, policies, backup instances and their lifecycle.

Stop, suspend and resume protection; soft delete and undelete; and the checks of
validateForBackup. The rules live in the domain modules (`vaults`, `policies`,
`instances`); these methods open a session, call them, and re-apply retention when a
policy change or a resume needs it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.orm import Session

from pgvault import (
    alerts,
    housekeeping,
    identity,
    instances,
    jobs,
    notifications,
    policies,
    rbac,
    recovery_points,
    servers,
    vaults,
)
from pgvault.clock import iso
from pgvault.errors import Code, UserError
from pgvault.instances import InstanceSpec
from pgvault.jobkinds import backup
from pgvault.services.base import ServiceBase


@dataclass(frozen=True)
class InstanceView:
    """An instance with the vault, server and policy a response describes it by."""

    instance: instances.Instance
    vault: vaults.Vault
    server: servers.Server
    policy: policies.Policy


def instance_view(s: Session, inst: instances.Instance) -> InstanceView:
    """The view of `inst`, read in the caller's session."""
    return InstanceView(inst, *instances.related(s, inst))


class ProtectionService(ServiceBase):
    """Vaults, policies and backup instances."""

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
        with self.ctx.db.read() as s:
            return vaults.get(s, sub, rg, name)

    def list_vaults(self, sub: str, rg: str | None) -> list[vaults.Vault]:
        with self.ctx.db.read() as s:
            return vaults.list_vaults(s, sub, rg)

    def delete_vault(self, sub: str, rg: str, name: str) -> None:
        """Delete an empty vault with its policies and its managed identity (and its roles)."""
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, name)
            held = instances.contents(s, vault.id)
            purge_at = iso(held.last_purge_at) if held.last_purge_at else None
            vaults.delete(s, vault, held.live, held.soft_deleted, purge_at)
            policies.delete_for_vault(s, vault.id)
            notifications.delete_for_vault(s, vault.id)
            rbac.remove_assignments_of(s, vault.principal_id)
            identity.delete_principal(s, vault.principal_id)

    # -- notifications (pgvault extension) --------------------------------------------------

    def put_notifications(
        self, sub: str, rg: str, vault_name: str, urls: list[str]
    ) -> tuple[vaults.Vault, dict[str, Any]]:
        """Replace the vault's alert destinations; the answer never holds a URL."""
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            notifications.put(s, self.ctx.cipher, vault.id, urls, self.ctx.clock.now())
            s.flush()
            return vault, notifications.summary(s, self.ctx.cipher, vault.id)

    def get_notifications(
        self, sub: str, rg: str, vault_name: str
    ) -> tuple[vaults.Vault, dict[str, Any]]:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            return vault, notifications.summary(s, self.ctx.cipher, vault.id)

    def test_notifications(self, sub: str, rg: str, vault_name: str) -> dict[str, Any]:
        """Send a test alert to every destination now (no transaction open while sending)."""
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            urls = notifications.urls(s, self.ctx.cipher, vault.id)
            enabled = notifications.alerts_for_job_failures(vault.properties)
        if not urls:
            raise UserError(
                f"Vault {vault_name!r} has no notification destinations.",
                code=Code.BadParameter,
                recommended_action="Add Apprise URLs with `pgvault vault notify-set "
                f"--vault-name {vault_name}` (one URL a line on stdin).",
            )
        alert = alerts.Alert(
            alerts.TEST,
            f"pgvault: test alert from vault {vault_name}",
            f"This is a test. Job-failure alerts of vault {vault_name} are "
            f"{'enabled' if enabled else 'disabled (alertsForAllJobFailures)'}.",
        )
        delivered = alerts.deliver(urls, alert)
        return {
            "destinations": len(urls),
            "delivered": delivered,
            "alertsForAllJobFailures": "Enabled" if enabled else "Disabled",
        }

    def put_policy(
        self, sub: str, rg: str, vault_name: str, name: str, properties: dict[str, Any]
    ) -> tuple[vaults.Vault, policies.Policy]:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            policy = policies.put(s, vault.id, name, properties, self.ctx.clock.now())
            users = instances.live_ids_using_policy(s, vault.id, policy.id)
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
        """Delete a policy; refused while any instance uses it."""
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            policy = policies.get(s, vault.id, name)
            policies.delete(s, policy, instances.count_using_policy(s, policy.id))

    # -- backup instances ------------------------------------------------------------------

    def _resolve_spec(
        self, s: Session, vault: vaults.Vault, spec: InstanceSpec
    ) -> tuple[servers.Server, str, policies.Policy]:
        """The server, database and policy a spec names (see `instances.resolve_target`)."""
        return instances.resolve_target(s, vault, spec.database_id, spec.policy_id, spec.secret_uri)

    def validate_for_backup(self, sub: str, rg: str, vault_name: str, spec: InstanceSpec) -> None:
        """The checks of validateForBackup: not yet protected, secret usable, login, privileges."""
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            server, database, _ = self._resolve_spec(s, vault, spec)
            instances.check_unprotected(
                s, server, database, "Stop protection there first, or use that instance."
            )
            source = backup.resolve_source(self.ctx, s, vault, server, database, spec.secret_uri)
        backup.check(source)

    def validate_for_update(
        self, sub: str, rg: str, vault_name: str, name: str, spec: InstanceSpec
    ) -> None:
        """validateForModifyBackup: the checks of validateForBackup for an existing instance
        (its own database is of course protected; another database is refused)."""
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            inst = instances.get(s, vault.id, name)
            spec = replace(spec, secret_uri=spec.secret_uri or inst.secret_uri)
            server, database, _ = self._resolve_spec(s, vault, spec)
            instances.check_same_datasource(inst, server.database_id(database))
            source = backup.resolve_source(self.ctx, s, vault, server, database, spec.secret_uri)
        backup.check(source)

    def put_instance(
        self, sub: str, rg: str, vault_name: str, name: str, spec: InstanceSpec
    ) -> tuple[InstanceView, bool]:
        """Protect a database (PUT); on an existing instance, change its policy, secret or
        friendly name. Returns the view and whether the instance was created."""
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            server, database, policy = self._resolve_spec(s, vault, spec)
            inst, policy_changed, created = instances.protect(
                s,
                vault.id,
                name,
                server,
                database,
                policy.id,
                spec.secret_uri,
                self.ctx.clock.now(),
                spec.friendly_name,
            )
            view = instance_view(s, inst)
        if policy_changed:  # a new policy re-applies retention to the existing points
            housekeeping.reapply_policy(self.ctx, view.instance.id)
        return view, created

    def get_instance(self, sub: str, rg: str, vault_name: str, name: str) -> InstanceView:
        with self.ctx.db.read() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            return instance_view(s, instances.get(s, vault.id, name))

    def list_instances(self, sub: str, rg: str, vault_name: str) -> list[InstanceView]:
        with self.ctx.db.read() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            return [instance_view(s, i) for i in instances.list_instances(s, vault.id)]

    def list_instances_in(self, vault_ids: list[str]) -> list[InstanceView]:
        """Live instances of several vaults, read in one session (the Backup center)."""
        with self.ctx.db.read() as s:
            rows = instances.list_in_vaults(s, vault_ids)
            related = instances.related_many(s, rows)
            return [InstanceView(i, *r) for i, r in zip(rows, related, strict=True)]

    def delete_instance(self, sub: str, rg: str, vault_name: str, name: str) -> None:
        """Soft-delete (kept for the vault's soft-delete days, then purged) or delete now.

        Deleting now is refused on an immutable vault while unexpired points remain.
        """
        now = self.ctx.clock.now()
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            inst = instances.get(s, vault.id, name)
            days = vaults.soft_delete_days(vault)
            instances.check_deletable(
                inst,
                vault.name,
                backup_running=jobs.running_backup(s, inst.id) is not None,
                purge_now=days is None,
                immutable=housekeeping.immutable(vault.properties),
                unexpired_points=recovery_points.has_unexpired(s, inst.id, now),
            )
            instances.soft_delete(inst, now, days)
        if days is None:
            housekeeping.purge_instances(self.ctx, now)

    def protection_action(
        self, sub: str, rg: str, vault_name: str, name: str, action: str
    ) -> InstanceView:
        """stopProtection, suspendBackups, resumeProtection or resumeBackups."""
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            inst = instances.get(s, vault.id, name)
            instances.act(inst, action, self.ctx.clock.now())
            view = instance_view(s, inst)
        if action.startswith("resume"):  # resumed points follow the policy again
            housekeeping.reapply_policy(self.ctx, view.instance.id)
        return view

    def list_deleted_instances(self, sub: str, rg: str, vault_name: str) -> list[InstanceView]:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            return [
                instance_view(s, i) for i in instances.list_instances(s, vault.id, deleted=True)
            ]

    def get_deleted_instance(self, sub: str, rg: str, vault_name: str, name: str) -> InstanceView:
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            return instance_view(s, instances.get_deleted(s, vault.id, name))

    def undelete_instance(self, sub: str, rg: str, vault_name: str, name: str) -> InstanceView:
        """Bring a soft-deleted instance back, protection stopped and data retained."""
        with self.ctx.db.session() as s:
            vault = vaults.get(s, sub, rg, vault_name)
            return instance_view(s, instances.undelete(s, vault.id, name))
