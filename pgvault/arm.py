"""ARM-style resource ids: the names every resource, scope and role assignment uses.

    /subscriptions/{s}/resourceGroups/{rg}/providers/{namespace}/{type}/{name}[/{child}/{name}...]

Names are validated here, once, at the edge: a name that would break an id, a
path in the datastore or a URL is refused before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pgvault.errors import BadRequest, Code

DP = "Microsoft.DataProtection"
PG = "Microsoft.DBforPostgreSQL"
KV = "Microsoft.KeyVault"
STORAGE = "Microsoft.Storage"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_GLOBAL_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,22}[a-z0-9]$")
_CONTAINER = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")


def check_name(value: str, what: str) -> str:
    """Validate a resource name (1-63 chars: letters, digits, `_ . -`, starting alphanumeric)."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or value.endswith("."):
        raise BadRequest(
            f"Invalid {what} name {value!r}: use 1-63 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit.",
            code=Code.InvalidResourceName,
            target=what,
        )
    return value


def check_global_name(value: str, what: str) -> str:
    """Validate a globally unique name (key vaults, storage accounts): 3-24 lowercase/digits/-."""
    if not isinstance(value, str) or not _GLOBAL_NAME.fullmatch(value):
        raise BadRequest(
            f"Invalid {what} name {value!r}: use 3-24 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit.",
            code=Code.InvalidResourceName,
            target=what,
        )
    return value


def check_container_name(value: str) -> str:
    """Validate a blob container name the way Azure and S3 both accept (3-63, lowercase)."""
    if not isinstance(value, str) or not _CONTAINER.fullmatch(value):
        raise BadRequest(
            f"Invalid container name {value!r}: use 3-63 lowercase letters, digits or single "
            "'-', starting and ending with a letter or digit.",
            code=Code.InvalidResourceName,
            target="container",
        )
    return value


def rg_id(sub: str, rg: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}"


def provider_id(sub: str, rg: str, namespace: str, *parts: str) -> str:
    """Id of a resource under a provider: `parts` alternate type and name."""
    return f"{rg_id(sub, rg)}/providers/{namespace}/" + "/".join(parts)


def vault_id(sub: str, rg: str, vault: str) -> str:
    return provider_id(sub, rg, DP, "backupVaults", vault)


def server_id(sub: str, rg: str, server: str) -> str:
    return provider_id(sub, rg, PG, "servers", server)


def database_id(sub: str, rg: str, server: str, database: str) -> str:
    return f"{server_id(sub, rg, server)}/databases/{database}"


def keyvault_id(sub: str, rg: str, kv: str) -> str:
    return provider_id(sub, rg, KV, "vaults", kv)


def storage_account_id(sub: str, rg: str, account: str) -> str:
    return provider_id(sub, rg, STORAGE, "storageAccounts", account)


def container_id(sub: str, rg: str, account: str, container: str) -> str:
    return f"{storage_account_id(sub, rg, account)}/blobServices/default/containers/{container}"


@dataclass(frozen=True)
class ResourceId:
    """A parsed ARM id: subscription, resource group, provider and (type, name) pairs."""

    subscription: str
    resource_group: str | None
    namespace: str | None
    parts: tuple[tuple[str, str], ...]

    def name_of(self, type_: str) -> str | None:
        """The name given to `type_` in this id (case-insensitive), if any."""
        for t, n in self.parts:
            if t.lower() == type_.lower():
                return n
        return None


def parse(resource_id: str) -> ResourceId:
    """Parse an ARM id, case-insensitively on the fixed segments."""
    segs = [s for s in str(resource_id).strip().split("/") if s]
    if len(segs) < 2 or segs[0].lower() != "subscriptions":
        raise BadRequest(
            f"{resource_id!r} is not a resource id: expected '/subscriptions/{{id}}/...'.",
            code=Code.InvalidResourceId,
        )
    sub, rest = segs[1], segs[2:]
    rg: str | None = None
    if len(rest) >= 2 and rest[0].lower() == "resourcegroups":
        rg, rest = rest[1], rest[2:]
    namespace: str | None = None
    if len(rest) >= 2 and rest[0].lower() == "providers":
        namespace, rest = rest[1], rest[2:]
    if len(rest) % 2:
        raise BadRequest(
            f"{resource_id!r} is not a resource id: types and names must come in pairs.",
            code=Code.InvalidResourceId,
        )
    pairs = tuple((rest[i], rest[i + 1]) for i in range(0, len(rest), 2))
    return ResourceId(sub, rg, namespace, pairs)
