"""Cross Region Restore settings and the regions table (pure rules, no services)."""

from __future__ import annotations

import pytest

from pgvault import regions, vaults
from pgvault.errors import BadRequest, Code

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
