"""Regions and their pairs: vaults live in a region; cross-region restore uses the pair."""

from __future__ import annotations

from pgvault.errors import BadRequest, Code

PAIRS: dict[str, str] = {
    "eastus": "westus",
    "westus": "eastus",
    "eastus2": "centralus",
    "centralus": "eastus2",
    "northeurope": "westeurope",
    "westeurope": "northeurope",
    "uksouth": "ukwest",
    "ukwest": "uksouth",
    "southeastasia": "eastasia",
    "eastasia": "southeastasia",
    "japaneast": "japanwest",
    "japanwest": "japaneast",
    "australiaeast": "australiasoutheast",
    "australiasoutheast": "australiaeast",
    "westus3": "eastus",
    "local": "local2",
    "local2": "local",
}


def normalize(region: str) -> str:
    """Canonical region name ("East US" -> "eastus"); unknown names are refused."""
    name = str(region).replace(" ", "").lower()
    if name not in PAIRS:
        known = ", ".join(sorted(PAIRS))
        raise BadRequest(
            f"Unknown region {region!r}. Use one of: {known}.",
            code=Code.LocationNotAvailableForResourceType,
            target="location",
        )
    return name


def paired(region: str) -> str:
    """The paired secondary region of `region`."""
    return PAIRS[normalize(region)]
