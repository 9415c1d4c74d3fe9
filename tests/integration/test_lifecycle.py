"""Protection lifecycle: stop, suspend, resume, soft delete and undelete, immutability."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from pgvault import housekeeping, instances, jobs
from pgvault.errors import PgVaultError
from tests.integration.conftest import RG, Vault
from tests.support.pg import PgCluster
from tests.support.sampledb import build_rich_database

pytestmark = pytest.mark.parametrize("metadata_url", ["sqlite"], indirect=True)


def _protected(vault: Vault, cluster: PgCluster) -> str:
    db = f"life_{uuid.uuid4().hex[:6]}"
    build_rich_database(cluster, db)
    instance = vault.protect(cluster, db)
    assert vault.backup(instance).status == jobs.COMPLETED
    return instance


def _state(vault: Vault, instance: str) -> str:
    return vault.service.get_instance(vault.sub, RG, vault.name, instance).instance.protection_state


def test_stop_suspend_resume(vault: Vault, pg_source: PgCluster) -> None:
    inst = _protected(vault, pg_source)
    svc = vault.service
    svc.protection_action(vault.sub, RG, vault.name, inst, "suspendBackups")
    assert _state(vault, inst) == instances.BACKUPS_SUSPENDED
    assert vault.backup(inst).status == jobs.COMPLETED  # on-demand still allowed
    svc.protection_action(vault.sub, RG, vault.name, inst, "stopProtection")
    assert _state(vault, inst) == instances.PROTECTION_STOPPED
    with pytest.raises(PgVaultError) as exc:
        svc.adhoc_backup(vault.sub, RG, vault.name, inst, None, None)
    assert exc.value.code == "UserErrorInvalidProtectionState"
    with pytest.raises(PgVaultError) as exc:
        svc.protection_action(vault.sub, RG, vault.name, inst, "resumeBackups")
    assert exc.value.code == "UserErrorInvalidProtectionState"
    svc.protection_action(vault.sub, RG, vault.name, inst, "resumeProtection")
    assert _state(vault, inst) == instances.PROTECTION_CONFIGURED
    assert len(svc.list_points(vault.sub, RG, vault.name, inst)[1]) == 2


def test_soft_delete_undelete_and_purge(vault: Vault, pg_source: PgCluster) -> None:
    inst = _protected(vault, pg_source)
    svc = vault.service
    point = vault.latest_point(inst)
    svc.delete_instance(vault.sub, RG, vault.name, inst)
    assert [v.instance.name for v in svc.list_instances(vault.sub, RG, vault.name)] == []
    deleted = svc.list_deleted_instances(vault.sub, RG, vault.name)
    assert [v.instance.name for v in deleted] == [inst]
    assert deleted[0].instance.purge_at is not None
    svc.undelete_instance(vault.sub, RG, vault.name, inst)
    assert _state(vault, inst) == instances.PROTECTION_STOPPED
    assert vault.latest_point(inst) == point
    # Delete again and let the soft-delete retention pass: objects, then rows, then the instance.
    svc.delete_instance(vault.sub, RG, vault.name, inst)
    later = vault.ctx.clock.now() + timedelta(days=15)
    assert housekeeping.purge_instances(vault.ctx, later) == 1
    assert svc.list_deleted_instances(vault.sub, RG, vault.name) == []
    assert vault.ctx.datastore.list() == []


def test_immutable_vault_refuses_early_deletion(vault: Vault, pg_source: PgCluster) -> None:
    inst = _protected(vault, pg_source)
    svc = vault.service
    settings = {
        "securitySettings": {
            "softDeleteSettings": {"state": "Off", "retentionDurationInDays": 14},
            "immutabilitySettings": {"state": "Locked"},
        }
    }
    svc.put_vault(vault.sub, RG, vault.name, "eastus", settings, {})
    with pytest.raises(PgVaultError) as exc:
        svc.delete_instance(vault.sub, RG, vault.name, inst)
    assert exc.value.code == "UserErrorOperationBlockedByImmutability"
    assert vault.latest_point(inst)
    unlock = {"securitySettings": {"immutabilitySettings": {"state": "Disabled"}}}
    with pytest.raises(PgVaultError) as exc:
        svc.put_vault(vault.sub, RG, vault.name, "eastus", unlock, {})
    assert exc.value.code == "UserErrorIrreversibleSettingChange"


def test_crash_between_marking_and_removing_converges(vault: Vault, pg_source: PgCluster) -> None:
    inst = _protected(vault, pg_source)
    with vault.ctx.db.session() as s:
        from pgvault import recovery_points

        view = vault.service.get_instance(vault.sub, RG, vault.name, inst)
        for p in recovery_points.list_points(s, view.instance.id):
            housekeeping.mark_deleting(s, p)
    # "Crash": objects still there, but the point is no longer listed.
    assert vault.service.list_points(vault.sub, RG, vault.name, inst)[1] == []
    assert vault.ctx.datastore.list() != []
    assert housekeeping.finish_deletions(vault.ctx) == 1
    assert housekeeping.finish_deletions(vault.ctx) == 0
    assert vault.ctx.datastore.list() == []
