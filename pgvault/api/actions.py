"""Which action a request performs, and on which scope: derived from the ARM path, as Azure does.

PUT    .../providers/Microsoft.DataProtection/backupVaults/v      -> backupVaults/write on v
GET    .../backupVaults/v/backupInstances                         -> backupInstances/read on v
POST   .../backupVaults/v/backupInstances/bi/restore              -> .../restore/action on bi
POST   .../Microsoft.DataProtection/locations/westus/crossRegionRestore
                                        -> locations/crossRegionRestore/action on the subscription
PUT    {scope}/providers/Microsoft.Authorization/roleAssignments/x -> roleAssignments/write on scope
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VERBS = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}

# Readable by anyone signed in: needed to find one's way (the CLI's default subscription,
# the role catalogue).
OPEN_ACTIONS = {
    "Microsoft.Resources/subscriptions/read",
    "Microsoft.Resources/tenants/read",
    "Microsoft.ResourceGraph/resources/read",
    "Microsoft.Authorization/roleDefinitions/read",
}

#: `POST /providers/Microsoft.ResourceGraph/resources`: a query, which Azure authorises as this
#: read; every row it returns is checked against the caller's roles (api/resourcegraph.py).
RESOURCE_GRAPH_PATH = "/providers/Microsoft.ResourceGraph/resources"
RESOURCE_GRAPH_READ = "Microsoft.ResourceGraph/resources/read"

#: `GET /metrics` (Prometheus): the service's metrics, readable by Reader or Backup Reader at `/`.
METRICS_PATH = "/metrics"
METRICS_READ = "Microsoft.Insights/metrics/read"


_SIGN_IN = re.compile(r"^/(oauth2/|[^/]+/oauth2/(v2\.0/)?token$)", re.IGNORECASE)


def is_sign_in(path: str) -> bool:
    """A token endpoint (pgvault's /oauth2/..., or a tenant's, as az and MSAL call): the audit
    log records only its refusals, not every sign-in."""
    return bool(_SIGN_IN.match(path))


@dataclass(frozen=True)
class Requested:
    action: str
    scope: str

    @property
    def open(self) -> bool:
        return self.action in OPEN_ACTIONS


def requested(method: str, path: str) -> Requested:
    """The action and scope of an API call."""
    if path.rstrip("/") == METRICS_PATH:
        return Requested(
            METRICS_READ if method in ("GET", "HEAD") else "Microsoft.Insights/metrics/write", "/"
        )
    if path.rstrip("/").lower() == RESOURCE_GRAPH_PATH.lower() and method == "POST":
        return Requested(RESOURCE_GRAPH_READ, "/")
    segs = [s for s in path.split("/") if s]
    lowered = [s.lower() for s in segs]
    if segs and lowered[0] == "pgvault":
        return Requested(f"pgvault/{'/'.join(segs[1:2])}/{VERBS.get(method, 'action')}", "/")
    if "providers" in lowered:
        at = len(lowered) - 1 - lowered[::-1].index("providers")
        base, namespace, rest = (
            segs[:at],
            segs[at + 1] if at + 1 < len(segs) else "",
            segs[at + 2 :],
        )
    else:
        base, namespace, rest = [], "Microsoft.Resources", segs
    types = rest[0::2]
    odd = len(rest) % 2 == 1
    if namespace.lower() == "microsoft.authorization":
        scope = "/" + "/".join(base)
        return Requested(
            f"Microsoft.Authorization/{types[0] if types else ''}/{VERBS.get(method, 'action')}",
            scope,
        )
    if namespace.lower() == "microsoft.dataprotection" and types[:1] == ["locations"] and base:
        # Secondary-region calls (cross-region restore) are checked at the subscription,
        # as Azure asks: Backup Operator (restore) or Backup Reader (jobs) there.
        scope = "/" + "/".join(base[:2])
        verb = "action" if odd and method == "POST" else VERBS.get(method, "action")
        return Requested(f"{namespace}/{'/'.join(types)}/{verb}", scope)
    resource = "/" + "/".join(segs[:-1] if odd else segs)
    if odd and method == "POST":
        action = f"{namespace}/{'/'.join(types[:-1])}/{types[-1]}/action"
    else:
        action = f"{namespace}/{'/'.join(t for t in types)}/{VERBS.get(method, 'action')}"
    return Requested(action.replace("//", "/"), resource if resource != "/" else "/")
