"""Regions and their pairs: vaults live in a region; cross-region restore uses the pair.

The built-in table follows Azure's pairs. A deployment adds its own regions, re-pairs
built-in ones and names each region's datastores (vault tier and archive tier) in a
regions file (`PGVAULT_REGIONS_FILE`, see `parse`); `configure` installs that table for
the process. Pure policy: no tables, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


#: The deployment's own pairs (from its regions file), over the built-in ones.
_CUSTOM_PAIRS: dict[str, str] = {}


@dataclass(frozen=True)
class Region:
    """A region of the deployment: its pair and where its datastores are (URLs; None: the
    default directories under PGVAULT_HOME, `regions/{name}/datastore` and `.../archive`)."""

    name: str
    paired: str
    datastore: str | None = None
    archive: str | None = None


def _all_pairs() -> dict[str, str]:
    return {**PAIRS, **_CUSTOM_PAIRS}


def _canon(name: object) -> str:
    return str(name).replace(" ", "").lower()


def parse(data: Any) -> dict[str, Region]:
    """The regions of a regions file: `{"regions": {"NAME": {"paired": "OTHER",
    "datastore": URL, "archive": URL}}}`. A region named here needs a pair (its own entry,
    or a built-in one); pairs must be mutual."""
    entries = data.get("regions") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise ValueError('A regions file holds {"regions": {NAME: {"paired": ..., ...}}}.')
    out: dict[str, Region] = {}
    for raw, entry in entries.items():
        if not isinstance(entry, dict):
            raise ValueError(f"Region {raw!r}: expected an object.")
        name = _canon(raw)
        pair = _canon(entry.get("paired") or PAIRS.get(name, ""))
        if not pair or pair == name:
            raise ValueError(f"Region {raw!r} needs a paired region other than itself.")
        stores = {k: entry.get(k) for k in ("datastore", "archive")}
        for key, value in stores.items():
            if value is not None and not isinstance(value, str):
                raise ValueError(f"Region {raw!r}: {key} must be a URL string.")
        out[name] = Region(name, pair, stores["datastore"], stores["archive"])
    for region in out.values():
        back = out[region.paired].paired if region.paired in out else PAIRS.get(region.paired)
        if back is not None and back != region.name and region.paired in out:
            raise ValueError(f"Regions {region.name!r} and {region.paired!r} must pair mutually.")
    return out


def configure(table: dict[str, Region]) -> None:
    """Install the deployment's pairs (idempotent; the service calls it once at start)."""
    _CUSTOM_PAIRS.clear()
    _CUSTOM_PAIRS.update({r.name: r.paired for r in table.values()})
    for r in table.values():  # the pair of a custom region is a region too
        _CUSTOM_PAIRS.setdefault(r.paired, r.name)


def known() -> list[str]:
    """Every region name, sorted."""
    return sorted(_all_pairs())


def normalize(region: str) -> str:
    """Canonical region name ("East US" -> "eastus"); unknown names are refused."""
    name = _canon(region)
    if name not in _all_pairs():
        known = ", ".join(sorted(_all_pairs()))
        raise BadRequest(
            f"Unknown region {region!r}. Use one of: {known}.",
            code=Code.LocationNotAvailableForResourceType,
            target="location",
        )
    return name


def paired(region: str) -> str:
    """The paired secondary region of `region`."""
    return _all_pairs()[normalize(region)]
