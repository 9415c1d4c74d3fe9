"""Azure Resource Graph, as far as `az dataprotection … list-from-resourcegraph` uses it.

Not a query language: the query is split into its `|` stages and each stage must be one of
the shapes the Azure CLI's dataprotection extension builds (backup instances and jobs in
`RecoveryServicesResources`, vaults in `Resources`): a table, `where type =~ '…'`, the
extension's `extend` columns, `where COLUMN in~ ('a','b')` filters and the job time window
`where properties.startTime > datetime(…)`. Anything else answers 400 naming the stage.
Rows are the resources' ARM shapes (plus resourceGroup, subscriptionId, tenantId and the
extended columns), only those the caller may read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from pgvault.api import shapes
from pgvault.api.deps import Auth, Svc, json_response
from pgvault.errors import BadRequest, Code
from pgvault.identity import Caller
from pgvault.schemas.resourcegraph import ResourceGraphBody
from pgvault.services import Service

router = APIRouter()

INSTANCES = "microsoft.dataprotection/backupvaults/backupinstances"
JOBS = "microsoft.dataprotection/backupvaults/backupjobs"
VAULTS = "microsoft.dataprotection/backupvaults"
#: The types each table holds (Azure keeps backup items in RecoveryServicesResources).
TABLES = {"recoveryservicesresources": (INSTANCES, JOBS), "resources": (VAULTS,)}
#: What reading a row of each type takes, checked at the row's own scope.
READ = {
    INSTANCES: "Microsoft.DataProtection/backupVaults/backupInstances/read",
    JOBS: "Microsoft.DataProtection/backupVaults/backupJobs/read",
    VAULTS: "Microsoft.DataProtection/backupVaults/read",
}

Row = dict[str, Any]


def _path(row: Row, path: str) -> Any:
    """`properties.dataSourceInfo.resourceID`: a column, else a walk through nested objects."""
    if path in row:
        return row[path]
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _vault_name(row: Row) -> Any:
    parts = re.split("/Microsoft.DataProtection/backupVaults/", row["id"], flags=re.IGNORECASE)
    return parts[1].split("/")[0] if len(parts) > 1 else None


def _operation(row: Row) -> Any:
    """The extension's `case(...)`: OnDemandBackup / ScheduledBackup, else the category."""
    props = row.get("properties") or {}
    category = str(props.get("operationCategory") or "")
    if category.lower().startswith("backup"):
        return ("OnDemand" if props.get("isUserTriggered") else "Scheduled") + category
    return category or "Invalid"


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


_OPERATION_CASE = (
    "case( tolower(properties.operationCategory) startswith 'backup' and "
    "properties.isUserTriggered == 'true', strcat('OnDemand',properties.operationCategory), "
    "tolower(properties.operationCategory) startswith 'backup' and "
    "properties.isUserTriggered == 'false', strcat('Scheduled', properties.operationCategory), "
    "type =~ 'microsoft.dataprotection/backupVaults/backupJobs', properties.operationCategory, "
    "'Invalid')"
)
#: (type, column, expression) -> how to compute it: the extends the extension writes.
EXTENDS: dict[tuple[str, str, str], Callable[[Row], Any]] = {
    (
        INSTANCES,
        "vaultName",
        _squash("split(split(id, '/Microsoft.DataProtection/backupVaults/')[1],'/')[0]"),
    ): _vault_name,
    (INSTANCES, "protectionState", _squash("properties.currentProtectionState")): (
        lambda r: _path(r, "properties.currentProtectionState")
    ),
    (INSTANCES, "datasourceId", _squash("properties.dataSourceInfo.resourceID")): (
        lambda r: _path(r, "properties.dataSourceInfo.resourceID")
    ),
    (JOBS, "vaultName", _squash("properties.vaultName")): (
        lambda r: _path(r, "properties.vaultName")
    ),
    (JOBS, "status", _squash("properties.status")): lambda r: _path(r, "properties.status"),
    (JOBS, "operation", _squash(_OPERATION_CASE)): _operation,
    (JOBS, "datasourceId", _squash("properties.dataSourceId")): (
        lambda r: _path(r, "properties.dataSourceId")
    ),
}

_TYPE = re.compile(r"^where\s+type\s*=~\s*'([^']*)'$", re.IGNORECASE)
_EXTEND = re.compile(r"^extend\s+(\w+)\s*=\s*(.+)$", re.IGNORECASE | re.DOTALL)
_IN = re.compile(r"^where\s+([\w.]+)\s+in~\s*\(((?:\s*'[^']*'\s*,?)*)\)$", re.IGNORECASE)
_SINCE = re.compile(
    r"^where\s+properties\.(startTime|endTime)\s*>\s*datetime\(([^)]*)\)$", re.IGNORECASE
)


@dataclass
class Query:
    """A parsed query: which resources, which columns to add, which filters to apply."""

    type_: str
    extends: list[tuple[str, Callable[[Row], Any]]] = field(default_factory=list)
    filters: list[Callable[[Row], bool]] = field(default_factory=list)

    def run(self, rows: list[Row]) -> list[Row]:
        out = []
        for row in rows:
            for column, compute in self.extends:
                row[column] = compute(row)
            if all(keep(row) for keep in self.filters):
                out.append(row)
        return out


def _unsupported(stage: str) -> BadRequest:
    return BadRequest(
        f"Unsupported Resource Graph query stage {stage[:200]!r}: pgvault answers the queries "
        "of `az dataprotection backup-instance|job|backup-vault list-from-resourcegraph` "
        "(tables RecoveryServicesResources and Resources, `where type =~`, their `extend` "
        "columns, `where COLUMN in~ (...)` and `where properties.startTime > datetime(...)`).",
        code=Code.InvalidQuery,
        target="query",
    )


def stages(query: str) -> Iterator[str]:
    """The `|`-separated stages, outside quotes and brackets."""
    depth, quoted, start = 0, False, 0
    for i, ch in enumerate(query):
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch in "([":
            depth += 1
        elif not quoted and ch in ")]":
            depth -= 1
        elif not quoted and depth == 0 and ch == "|":
            yield query[start:i].strip()
            start = i + 1
    yield query[start:].strip()


def _in_filter(column: str, values: list[str]) -> Callable[[Row], bool]:
    wanted = {v.lower() for v in values}
    return lambda row: str(_path(row, column)).lower() in wanted


def _time_filter(column: str, text: str) -> Callable[[Row], bool]:
    try:
        since = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _unsupported(f"datetime({text})") from None
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)

    def keep(row: Row) -> bool:
        value = _path(row, f"properties.{column}")
        if not isinstance(value, str):
            return False
        return datetime.fromisoformat(value.replace("Z", "+00:00")) > since

    return keep


def parse(query: str) -> Query:
    """The query's meaning, or 400 at the first stage that is not one az sends."""
    parts = [p for p in stages(query) if p]
    if len(parts) < 2:
        raise _unsupported(query)
    table = parts[0].lower()
    match = _TYPE.match(parts[1])
    if table not in TABLES or not match or match.group(1).lower() not in TABLES[table]:
        raise _unsupported(" | ".join(parts[:2]))
    parsed = Query(match.group(1).lower())
    for stage in parts[2:]:
        if m := _EXTEND.match(stage):
            compute = EXTENDS.get((parsed.type_, m.group(1), _squash(m.group(2))))
            if compute is None:
                raise _unsupported(stage)
            parsed.extends.append((m.group(1), compute))
        elif m := _IN.match(stage):
            parsed.filters.append(_in_filter(m.group(1), re.findall(r"'([^']*)'", m.group(2))))
        elif (m := _SINCE.match(stage)) and parsed.type_ == JOBS:
            parsed.filters.append(_time_filter(m.group(1), m.group(2)))
        else:
            raise _unsupported(stage)
    return parsed


def _row(resource: dict[str, Any], sub: str, rg: str, location: str, tenant: str) -> Row:
    return {
        **resource,
        "type": str(resource["type"]).lower(),
        "resourceGroup": rg.lower(),
        "subscriptionId": sub,
        "tenantId": tenant,
        "location": resource.get("location", location),
        "kind": "",
        "managedBy": "",
        "tags": resource.get("tags") or {},
    }


def rows(svc: Service, caller: Caller, subscriptions: list[str], type_: str) -> list[Row]:
    """Every resource of `type_` in the subscriptions that the caller may read."""
    tenant = svc.access.tenant_id()
    read = READ[type_]
    out: list[Row] = []
    for sub in subscriptions:
        for vault in svc.list_vaults(sub, None):
            whole_vault = svc.access.allowed(caller, read, vault.arm_id)
            here = (sub, vault.resource_group, vault.location, tenant)
            found: list[Row]
            if type_ == VAULTS:
                found = [_row(shapes.vault(vault), *here)]
            elif type_ == INSTANCES:
                views = svc.list_instances(sub, vault.resource_group, vault.name)
                found = [_row(shapes.instance(v), *here) for v in views]
            else:
                jobs = svc.list_jobs(sub, vault.resource_group, vault.name, limit=1000)
                found = [_row(shapes.job(v), *here) for v in jobs]
            out += [r for r in found if whole_vault or svc.access.allowed(caller, read, r["id"])]
    return out


@router.post("/providers/Microsoft.ResourceGraph/resources")
def query_resources(svc: Svc, caller: Auth, body: ResourceGraphBody) -> JSONResponse:
    parsed = parse(body.query)
    subs = body.subscriptions or [s.id for s in svc.list_subscriptions()]
    known = {s.id.lower() for s in svc.list_subscriptions()}
    found = parsed.run(rows(svc, caller, [s for s in subs if s.lower() in known], parsed.type_))
    options = body.options or {}
    skip = options.get("$skip") or options.get("skip") or 0
    top = options.get("$top") or options.get("top") or 1000
    skip = skip if isinstance(skip, int) and skip >= 0 else 0
    top = top if isinstance(top, int) and 0 < top <= 1000 else 1000
    page = found[skip : skip + top]
    return json_response(
        {
            "totalRecords": len(found),
            "count": len(page),
            "resultTruncated": "false" if skip + top >= len(found) else "true",
            "data": page,
            "facets": [],
        }
    )
