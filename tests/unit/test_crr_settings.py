"""Cross Region Restore settings and the regions table (pure rules, no services)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgvault import regions, vaults
from pgvault.config import Settings
from pgvault.context import Context
from pgvault.errors import BadRequest, Code, PgVaultError

GRS = [{"datastoreType": "VaultStore", "type": "GeoRedundant"}]
LRS = [{"datastoreType": "VaultStore", "type": "LocallyRedundant"}]
ON = {"crossRegionRestoreSettings": {"state": "Enabled"}}
OFF = {"crossRegionRestoreSettings": {"state": "Disabled"}}


def _props(storage: list[dict[str, str]], feature: dict[str, object]) -> dict[str, object]:
    return {**vaults.DEFAULT_PROPERTIES, "storageSettings": storage, "featureSettings": feature}


def test_crr_needs_a_geo_redundant_vault() -> None:
    with pytest.raises(BadRequest) as info:
        vaults.check_settings(None, _props(LRS, ON))
    assert info.value.code == Code.UserErrorCrossRegionRestoreNeedsGeoRedundancy
    vaults.check_settings(None, _props(GRS, ON))


def test_crr_cannot_be_disabled_once_enabled() -> None:
    with pytest.raises(BadRequest) as info:
        vaults.check_settings(_props(GRS, ON), _props(GRS, OFF))
    assert info.value.code == Code.UserErrorCrossRegionRestoreCannotBeDisabled
    with pytest.raises(BadRequest) as info:  # nor by dropping geo-redundancy
        vaults.check_settings(_props(GRS, ON), _props(LRS, ON))
    assert info.value.code == Code.UserErrorCrossRegionRestoreNeedsGeoRedundancy


def test_builtin_pairs_and_a_deployments_own_regions() -> None:
    assert regions.paired("East US") == "westus"
    assert regions.paired("northeurope") == "westeurope"
    table = regions.parse(
        {
            "regions": {
                "site-a": {"paired": "site-b", "datastore": "file:///a", "archive": "file:///aa"},
                "site-b": {"paired": "site-a", "datastore": "s3://bucket/b"},
                "westus": {"datastore": "file:///w"},
            }
        }
    )
    assert table["westus"].paired == "eastus"
    try:
        regions.configure(table)
        assert regions.paired("site-a") == "site-b"
        assert regions.normalize("Site-B") == "site-b"
    finally:
        regions.configure({})
    with pytest.raises(BadRequest):
        regions.normalize("site-a")


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"regions": {"x": {}}},
        {"regions": {"x": {"paired": "x"}}},
        {"regions": {"x": {"paired": "y"}, "y": {"paired": "z"}}},
        {"regions": {"x": {"paired": "y", "datastore": 3}}},
    ],
)
def test_bad_regions_files_are_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"[Rr]egion"):
        regions.parse(data)


def test_a_region_cannot_reuse_the_primary_datastore(tmp_path: Path) -> None:
    regions_file = tmp_path / "regions.json"
    primary = (tmp_path / "primary").as_uri()
    regions_file.write_text(json.dumps({"regions": {"westus": {"datastore": primary}}}))
    settings = Settings(home=tmp_path / "home", datastore_url=primary, regions_file=regions_file)
    with pytest.raises(PgVaultError, match="datastore of their own"):
        Context.create(settings)
    regions_file.write_text("{not json")
    with pytest.raises(PgVaultError, match="Cannot use the regions file"):
        Context.create(settings)
    regions.configure({})


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PGVAULT_REGIONS_FILE", str(tmp_path / "regions.json"))
    monkeypatch.setenv("PGVAULT_REPLICATION_DELAY_SECONDS", "900")
    settings = Settings.from_env(home=tmp_path)
    assert settings.regions_file == tmp_path / "regions.json"
    assert settings.replication_delay_seconds == 900
    assert settings.region_datastores("westus", None, None)[0].endswith("/regions/westus/datastore")
    monkeypatch.setenv("PGVAULT_REPLICATION_DELAY_SECONDS", "-1")
    with pytest.raises(ValueError, match="0 or more"):
        Settings.from_env()


def test_secondary_datastores_are_off_limits_to_storage_accounts(tmp_path: Path) -> None:
    regions_file = tmp_path / "regions.json"
    west = tmp_path / "west"
    regions_file.write_text(json.dumps({"regions": {"westus": {"datastore": west.as_uri()}}}))
    settings = Settings(
        home=tmp_path / "home", regions_file=regions_file, local_storage_roots=(tmp_path,)
    )
    ctx = Context.create(settings)
    try:
        protected = ctx.storage_policy.protected
        assert west in protected
        assert tmp_path / "home" / "regions" in protected
    finally:
        ctx.db.dispose()
        regions.configure({})
