"""Review + restore and validateForBackup check the vault identity's roles and the DB grants."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pgvault import jobs
from pgvault.errors import PgVaultError
from pgvault.services import InstanceSpec
from tests.integration.conftest import RG, Vault
from tests.support.pg import PgCluster
from tests.support.sampledb import build_rich_database


def _codes(error: PgVaultError) -> set[str]:
    return {e.code for e in getattr(error, "errors", [error])}


def _second_vault(vault: Vault, name: str = "bare") -> Vault:
    """A vault whose identity has been granted nothing."""
    vault.service.put_vault(vault.sub, RG, name, "eastus", {}, {})
    vault.service.put_policy(vault.sub, RG, name, "weekly", {})
    return Vault(vault.service, vault.ctx, vault.sub, name)


def _spec(v: Vault, cluster: PgCluster, db: str, secret: str) -> InstanceSpec:
    v.register(cluster, "src")
    return InstanceSpec(
        database_id=v.service.get_server(v.sub, RG, "src").database_id(db),
        policy_id=f"{v.vault_id}/backupPolicies/weekly",
        secret_uri=secret,
    )


@pytest.mark.parametrize("metadata_url", ["sqlite"], indirect=True)
def test_backup_needs_the_vault_identity_roles(vault: Vault, pg_source: PgCluster) -> None:
    bare = _second_vault(vault)
    db = f"perm_{uuid.uuid4().hex[:6]}"
    build_rich_database(pg_source, db)
    spec = _spec(bare, pg_source, db, bare.admin_secret(pg_source))
    with pytest.raises(PgVaultError) as exc:
        bare.service.validate_for_backup(bare.sub, RG, bare.name, spec)
    assert _codes(exc.value) == {
        "UserErrorMSIMissingPermissions",
        "UserErrorMissingPermissionsOnSecretStore",
    }
    fixes = [e.recommended_action or "" for e in exc.value.errors]  # type: ignore[attr-defined]
    principal = bare.service.get_vault(bare.sub, RG, bare.name).principal_id
    assert any('--role "Reader" --scope /subscriptions/' in f and principal in f for f in fixes)
    assert any('--role "Key Vault Secrets User"' in f for f in fixes)
    # Grant exactly what the fixes say, at the scopes they name, and it passes.
    for e in exc.value.errors:  # type: ignore[attr-defined]
        role = (e.recommended_action or "").split('--role "')[1].split('"')[0]
        bare.service.access.create_assignment(None, e.target, role, principal)
    bare.service.validate_for_backup(bare.sub, RG, bare.name, spec)


@pytest.mark.parametrize("metadata_url", ["sqlite"], indirect=True)
def test_missing_db_grants_are_named(vault: Vault, pg_source: PgCluster) -> None:
    db = f"grants_{uuid.uuid4().hex[:6]}"
    build_rich_database(pg_source, db)
    user = f"weak{uuid.uuid4().hex[:6]}"
    pg_source.create_role(user, "weak-pw")
    secret = vault.secret(
        user, f"Server=127.0.0.1;Port={pg_source.port};User Id={user};Password=weak-pw;"
    )
    spec = _spec(vault, pg_source, db, secret)
    with pytest.raises(PgVaultError) as exc:
        vault.service.validate_for_backup(vault.sub, RG, vault.name, spec)
    assert _codes(exc.value) == {"UserErrorMissingDBPermissions"}
    assert "table " in exc.value.message


@pytest.mark.parametrize("metadata_url", ["sqlite"], indirect=True)
def test_restore_checks_identity_on_target_server_and_container(
    vault: Vault, pg_source: PgCluster, pg_target: PgCluster, tmp_path: Path
) -> None:
    db = f"tgt_{uuid.uuid4().hex[:6]}"
    build_rich_database(pg_source, db)
    instance = vault.protect(pg_source, db)
    assert vault.backup(instance).status == jobs.COMPLETED
    point = vault.latest_point(instance)
    # The target server lives in another resource group the identity has no role on.
    vault.service.put_group(vault.sub, "elsewhere", "eastus")
    vault.service.put_server(vault.sub, "elsewhere", "far", "127.0.0.1", pg_target.port, "eastus")
    secret = vault.secret(
        "restorer", f"Server=127.0.0.1;Port={pg_target.port};User Id=restorer;Password=restorer-pw;"
    )
    server_id = vault.service.get_server(vault.sub, "elsewhere", "far").arm_id
    from pgvault.jobkinds.restore import DatabaseTarget, RestoreRequest

    req = RestoreRequest(point, "VaultStore", DatabaseTarget(server_id, "never_made", secret))
    error = vault.validate(instance, req)
    assert error is not None
    assert _codes(error) == {"UserErrorMSIMissingPermissions"}
    assert not pg_target.database_exists("never_made")
    with pytest.raises(PgVaultError):
        vault.service.trigger_restore(vault.sub, RG, vault.name, instance, req)
    # A container in that group: Storage Blob Data Contributor is missing there.
    vault.service.put_storage_account(
        vault.sub, "elsewhere", "farfiles", "eastus", "local", {"path": str(tmp_path / "files")}
    )
    vault.service.put_container(vault.sub, "elsewhere", "farfiles", "dumps")
    files = vault.files_request(point, "http://x/blob/farfiles/dumps", "p/q")
    error = vault.validate(instance, files)
    assert error is not None
    assert _codes(error) == {"UserErrorContainerNotAccessible"}
    assert "role assignment create" in (error.recommended_action or "")


@pytest.mark.parametrize("metadata_url", ["sqlite"], indirect=True)
def test_cross_subscription_restore_can_be_disabled(
    vault: Vault, pg_source: PgCluster, pg_target: PgCluster
) -> None:
    from pgvault import tenancy
    from pgvault.jobkinds.restore import DatabaseTarget, RestoreRequest

    db = f"csr_{uuid.uuid4().hex[:6]}"
    build_rich_database(pg_source, db)
    instance = vault.protect(pg_source, db)
    assert vault.backup(instance).status == jobs.COMPLETED
    other = str(uuid.uuid4())
    with vault.ctx.db.session() as s:
        s.add(
            tenancy.Subscription(
                id=other, display_name="other", is_default=False, created_at=vault.ctx.clock.now()
            )
        )
    vault.service.put_group(other, "rg2", "eastus")
    vault.service.put_server(other, "rg2", "tgt2", "127.0.0.1", pg_target.port, "eastus")
    server_id = vault.service.get_server(other, "rg2", "tgt2").arm_id
    principal = vault.service.get_vault(vault.sub, RG, vault.name).principal_id
    vault.service.access.create_assignment(None, f"/subscriptions/{other}", "Reader", principal)
    secret = vault.secret(
        "restorer2",
        f"Server=127.0.0.1;Port={pg_target.port};User Id=restorer;Password=restorer-pw;",
    )
    req = RestoreRequest(
        vault.latest_point(instance),
        "VaultStore",
        DatabaseTarget(server_id, f"csr_{uuid.uuid4().hex[:6]}", secret),
    )
    assert vault.validate(instance, req) is None  # enabled by default, as in Azure
    settings = {"featureSettings": {"crossSubscriptionRestoreSettings": {"state": "Disabled"}}}
    vault.service.put_vault(vault.sub, RG, vault.name, "eastus", settings, {})
    error = vault.validate(instance, req)
    assert error is not None
    assert _codes(error) == {"UserErrorCrossSubscriptionRestoreDisabled"}
