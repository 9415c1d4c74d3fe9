"""A secret's password goes only to the address the secret names: validateForBackup,
the backup job, Review + restore and the restore job (issue 8 finding 1)."""

from __future__ import annotations

import uuid

import pytest

from pgvault import jobs
from pgvault.errors import PgVaultError, ValidationFailed
from pgvault.services import InstanceSpec
from tests.integration.conftest import RG, Vault
from tests.support.fakepg import fake_postgres
from tests.support.pg import PgCluster
from tests.support.sampledb import build_rich_database


def _codes(exc: PgVaultError) -> set[str]:
    errors = exc.errors if isinstance(exc, ValidationFailed) else [exc]
    return {str(e.code) for e in errors}


def _spec(vault: Vault, server: str, db: str, secret: str) -> InstanceSpec:
    return InstanceSpec(
        database_id=vault.service.get_server(vault.sub, RG, server).database_id(db),
        policy_id=f"{vault.vault_id}/backupPolicies/weekly",
        secret_uri=secret,
    )


@pytest.mark.parametrize("metadata_url", ["sqlite"], indirect=True)
def test_validate_for_backup_refuses_a_secret_for_another_address(
    vault: Vault, pg_source: PgCluster, pg_target: PgCluster
) -> None:
    db = f"addr_{uuid.uuid4().hex[:6]}"
    build_rich_database(pg_source, db)
    vault.register(pg_source, "src")
    password = pg_source.superuser_password
    cases = {
        # names the other cluster's port: the secret is for another server
        f"Server=127.0.0.1;Port={pg_target.port};User Id=postgres;Password={password};": (
            "UserErrorSecretServerMismatch"
        ),
        # no port: 5432, which is not where src is registered
        f"Server=127.0.0.1;User Id=postgres;Password={password};": "UserErrorSecretServerMismatch",
        # no server at all: a password must name where it may go
        f"User Id=postgres;Password={password};": "UserErrorSecretServerNotNamed",
        f"postgresql://postgres:{password}@/postgres": "UserErrorSecretServerNotNamed",
    }
    for i, (value, code) in enumerate(cases.items()):
        secret = vault.secret(f"case{i}", value)
        with pytest.raises(PgVaultError) as exc:
            vault.service.validate_for_backup(
                vault.sub, RG, vault.name, _spec(vault, "src", db, secret)
            )
        assert _codes(exc.value) == {code}, value
        assert password not in exc.value.message
        assert exc.value.recommended_action
    # The URI form with the right host and port works, host compared case-insensitively.
    vault.service.put_server(vault.sub, RG, "src", "LocalHost", pg_source.port, "eastus")
    uri = vault.secret(
        "uri", f"postgresql://postgres:{password}@localhost:{pg_source.port}/postgres"
    )
    vault.service.validate_for_backup(vault.sub, RG, vault.name, _spec(vault, "src", db, uri))


@pytest.mark.parametrize("metadata_url", ["sqlite"], indirect=True)
def test_repointed_servers_fail_backup_review_and_queued_restore(
    vault: Vault, pg_source: PgCluster, pg_target: PgCluster
) -> None:
    db = f"addr_{uuid.uuid4().hex[:6]}"
    build_rich_database(pg_source, db)
    instance = vault.protect(pg_source, db)
    assert vault.backup(instance).status == jobs.COMPLETED
    point = vault.latest_point(instance)
    vault.register(pg_target, "tgt")
    restorer = vault.secret(
        "restorer", f"Server=127.0.0.1;Port={pg_target.port};User Id=restorer;Password=restorer-pw;"
    )
    request = vault.db_request(point, "tgt", f"r_{uuid.uuid4().hex[:6]}", restorer)
    assert vault.validate(instance, request) is None

    with fake_postgres("cleartext") as fake:
        # Both servers now point at the listener, as a Contributor may do.
        vault.service.put_server(vault.sub, RG, "src", "127.0.0.1", fake.port, "eastus")
        vault.service.put_server(vault.sub, RG, "tgt", "127.0.0.1", fake.port, "eastus")
        job = vault.backup(instance)
        assert job.status == jobs.FAILED
        assert job.error_code == "UserErrorSecretServerMismatch"
        error = vault.validate(instance, request)
        assert error is not None
        assert _codes(error) == {"UserErrorSecretServerMismatch"}
        # A restore queued before the change (its checks passed then) re-checks at run time.
        inst = vault.service.get_instance(vault.sub, RG, vault.name, instance).instance
        with vault.ctx.db.session() as s:
            queued = jobs.create(
                s,
                vault_id=inst.vault_id,
                instance_id=inst.id,
                operation=jobs.RESTORE,
                params={**request.to_params(), "checks": {}},
                now=vault.ctx.clock.now(),
                recovery_point_id=point,
            )
            queued_id = queued.id
        vault.service.pool.notify()  # type: ignore[union-attr]
        done = vault.wait(queued_id)
        assert done.status == jobs.FAILED
        assert done.error_code == "UserErrorSecretServerMismatch"
        assert fake.connections == 0
        assert not fake.saw(pg_source.superuser_password)
        assert not fake.saw("restorer-pw")
    assert not pg_target.database_exists(request.target.database)  # type: ignore[union-attr]
