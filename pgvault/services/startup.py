"""Start-up: the schema, the default subscription and resource group, the admin principal.

Run by every `pgvault serve` (idempotent, and safe when two processes start at once).
The admin's client secret is shown to no one: it goes to a 0600 file under PGVAULT_HOME,
written whole or not at all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from pgvault import identity, rbac, tenancy
from pgvault.context import Context

ADMIN = "admin"


def bootstrap(ctx: Context) -> str | None:
    """Migrate, create the default subscription/resource group and the admin principal.

    Returns a note for the console on first start (never the secret itself: the
    admin's client credentials go to a 0600 file under PGVAULT_HOME).
    """
    ctx.migrate()
    now = ctx.clock.now()
    try:
        with ctx.db.session() as s:
            tenancy.ensure_default(s, now)
            if identity.by_name(s, ADMIN) is not None:
                return None  # another process (or an earlier start) made it
            principal, secret = identity.create_principal(s, ADMIN, identity.SERVICE_PRINCIPAL, now)
            rbac.assign(
                s,
                scope="/",
                role=rbac.find_role(s, "Owner"),
                principal_id=principal.id,
                principal_type=principal.type,
                created_by=None,
                now=now,
            )
            write_credentials(
                ctx.settings.credentials_file, principal.client_id or "", secret or ""
            )
    except IntegrityError:
        return None  # a concurrent first start won the race
    return (
        f"Created the admin principal; its client credentials are in "
        f"{ctx.settings.credentials_file} (mode 0600). "
        "Get a bearer token with: pgvault auth token"
    )


def write_credentials(path: Path, client_id: str, secret: str) -> None:
    """Write the admin's credentials, mode 0600 (they hold its secret), atomically.

    A temp file renamed into place: a reader (`pgvault auth token`) never sees half a file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"clientId": client_id, "clientSecret": secret}, f)
    os.replace(tmp, path)
