"""The vault datastore on S3 (moto) and Azure Blob (Azurite): the same round trip."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.integration.conftest import Vault
from tests.integration.test_roundtrip import _restore_as_database_roundtrip
from tests.support.pg import PgCluster
from tests.support.services import AzuriteEndpoint, S3Endpoint


@pytest.fixture(params=["s3", "azure"])
def datastore_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "s3":
        s3: S3Endpoint = request.getfixturevalue("s3")
        bucket = f"vault-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(bucket)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_access_key)
        yield f"s3://{bucket}/pgvault?endpoint={s3.endpoint_url}&region={s3.region}"
    else:
        az: AzuriteEndpoint = request.getfixturevalue("azurite")
        container = f"vault-{uuid.uuid4().hex[:8]}"
        az.create_container(container)
        monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", az.account_key)
        yield (f"az://{container}/pgvault?account={az.account_name}&endpoint={az.blob_endpoint}")


@pytest.mark.parametrize("metadata_url", ["sqlite"], indirect=True)
def test_roundtrip_on_object_store(
    vault: Vault, pg_source: PgCluster, pg_target: PgCluster
) -> None:
    _restore_as_database_roundtrip(vault, pg_source, pg_target)
