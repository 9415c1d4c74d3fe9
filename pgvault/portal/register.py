"""Register resources from the portal's Resources page: PostgreSQL servers, key vaults,
storage accounts and their containers.

Each form is turned into the API's request body (`pgvault.schemas.resources`) and goes
through the same service call, so the portal validates exactly as the API and the CLI do;
each POST carries the session's CSRF token and is authorised and audited as the PUT the
API would take.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import RedirectResponse, Response

from pgvault import arm
from pgvault.portal.session import Session, checked, mark_portal
from pgvault.schemas.base import parse
from pgvault.schemas.resources import KeyVaultBody, ServerBody, StorageAccountBody

router = APIRouter(dependencies=[Depends(mark_portal)], include_in_schema=False)
Checked = Annotated[Session, Depends(checked)]
Text = Annotated[str, Form(max_length=1024)]
KINDS = ("local",)  #: storage account kinds the form offers (the CLI and API take more)


def _done(anchor: str) -> Response:
    return RedirectResponse(f"/resources#{anchor}", status_code=303)


@router.post("/resources/servers")
def add_server(
    session: Checked,
    sub: Text,
    name: Text,
    host: Text,
    region: Text,
    rg: Text = "default",
    port: Annotated[int, Form(ge=1, le=65535)] = 5432,
) -> Response:
    """Register a PostgreSQL server (where pgvault reaches it, and its region)."""
    body = parse(
        ServerBody,
        {"location": region, "properties": {"fullyQualifiedDomainName": host, "port": port}},
    )
    arm_path = arm.server_id(sub, rg, name)
    session.require("PUT", arm_path)
    session.svc.put_server(
        sub, rg, name, body.host, body.port, body.location, body.connection(), session.caller
    )
    session.audit("PUT", arm_path, 200)
    return _done("srv")


@router.post("/resources/keyvaults")
def add_keyvault(
    session: Checked, sub: Text, name: Text, region: Text, rg: Text = "default"
) -> Response:
    """Create a key vault (its secrets are then set on the same page, write-only)."""
    body = parse(KeyVaultBody, {"location": region})
    arm_path = arm.keyvault_id(sub, rg, name)
    session.require("PUT", arm_path)
    session.svc.put_keyvault(sub, rg, name, body.location)
    session.audit("PUT", arm_path, 200)
    return _done("kvs")


@router.post("/resources/accounts")
def add_storage_account(
    session: Checked,
    sub: Text,
    name: Text,
    region: Text,
    path: Text,
    rg: Text = "default",
    kind: Text = "local",
) -> Response:
    """Create a storage account of the local kind (a directory on the pgvault host); its
    options are checked by `storage.accounts`, as for the API and the CLI."""
    body = parse(
        StorageAccountBody,
        {"location": region, "properties": {"backend": {"type": kind, "path": path}}},
    )
    arm_path = arm.storage_account_id(sub, rg, name)
    session.require("PUT", arm_path)
    backend = body.backend
    session.svc.put_storage_account(
        sub, rg, name, body.location, backend.type or "local", backend.options()
    )
    session.audit("PUT", arm_path, 200)
    return _done("sas")


@router.post("/resources/accounts/{sub}/{rg}/{account}/containers")
def add_container(sub: str, rg: str, account: str, session: Checked, name: Text) -> Response:
    """Create a blob container in a storage account."""
    arm_path = arm.container_id(sub, rg, account, name)
    session.require("PUT", arm_path)
    session.svc.put_container(sub, rg, account, name)
    session.audit("PUT", arm_path, 200)
    return _done("sas")
