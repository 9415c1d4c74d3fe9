"""Registered PostgreSQL servers: where databases are backed up from and restored to.

A server is registered by address and region, with how pgvault may talk to it: its
`sslmode` (prefer by default; require, verify-ca or verify-full), the root certificate
(PEM) that verifies it, and the password exchange it may ask for (scram-sha-256 by
default; md5 allowed only when set). Credentials live in key-vault secrets and are read
fresh for every job, so a DBA can rotate them; a secret's password goes only to the
address the secret names (see `jobkinds.base.endpoint`), so re-pointing a server does not
re-point anyone's password. `upsert` reports what it changed, for the audit log.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, Session, mapped_column

from pgvault import arm, armstore, regions, tenancy
from pgvault.armstore import ArmResource
from pgvault.errors import BadRequest, Code, Conflict
from pgvault.orm import Base


class Server(ArmResource, Base):
    __tablename__ = "servers"

    name: Mapped[str] = mapped_column(String(63))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    sslmode: Mapped[str] = mapped_column(String(16), default="prefer", server_default="prefer")
    ssl_root_cert: Mapped[str | None] = mapped_column(Text, nullable=True)
    password_authentication: Mapped[str] = mapped_column(
        String(16), default="scram-sha-256", server_default="scram-sha-256"
    )

    @property
    def arm_id(self) -> str:
        return arm.server_id(self.subscription_id, self.resource_group, self.name)

    def database_id(self, database: str) -> str:
        return arm.database_id(self.subscription_id, self.resource_group, self.name, database)


def _check_address(host: str, port: int) -> None:
    if not host or len(host) > 255 or any(c.isspace() or c in "/@?#;'\"" for c in host):
        raise BadRequest(
            f"Invalid server host {host!r}: give a host name or IP address.",
            code=Code.BadParameter,
            target="host",
        )
    if not isinstance(port, int) or not 0 < port < 65536:
        raise BadRequest(
            f"Invalid port {port!r}: use 1-65535.", code=Code.BadParameter, target="port"
        )


SSL_MODES = ("prefer", "require", "verify-ca", "verify-full")
PASSWORD_AUTHENTICATION = ("scram-sha-256", "md5")
MAX_ROOT_CERT = 64 * 1024


@dataclass(frozen=True)
class Connection:
    """How pgvault talks to a server besides its address (the PUT's optional settings)."""

    sslmode: str = "prefer"
    ssl_root_cert: str | None = None
    password_authentication: str = "scram-sha-256"


def _check_connection(c: Connection) -> None:
    if c.sslmode not in SSL_MODES:
        raise BadRequest(
            f"Invalid sslMode {c.sslmode!r}: use one of {', '.join(SSL_MODES)}.",
            code=Code.BadParameter,
            target="properties.sslMode",
        )
    if c.password_authentication not in PASSWORD_AUTHENTICATION:
        raise BadRequest(
            f"Invalid passwordAuthentication {c.password_authentication!r}: use "
            f"{' or '.join(PASSWORD_AUTHENTICATION)}.",
            code=Code.BadParameter,
            target="properties.passwordAuthentication",
        )
    if c.ssl_root_cert is not None:
        try:
            if len(c.ssl_root_cert) > MAX_ROOT_CERT:
                raise ValueError("too long")
            x509.load_pem_x509_certificates(c.ssl_root_cert.encode())
        except ValueError:
            raise BadRequest(
                "properties.sslRootCertificate is not PEM certificate text (at most 64 KiB).",
                code=Code.BadParameter,
                target="properties.sslRootCertificate",
            ) from None
    if c.sslmode in ("verify-ca", "verify-full") and not c.ssl_root_cert:
        raise BadRequest(
            f"sslMode {c.sslmode} needs the root certificate that signed the server's "
            "certificate: give properties.sslRootCertificate (PEM).",
            code=Code.BadParameter,
            target="properties.sslRootCertificate",
        )


def address_of(server: Server) -> str:
    return f"{server.host}:{server.port}"


def _settings(server: Server) -> dict[str, Any]:
    return {
        "address": address_of(server),
        "sslMode": server.sslmode,
        "sslRootCertificate": (
            "sha256:" + hashlib.sha256(server.ssl_root_cert.encode()).hexdigest()[:16]
            if server.ssl_root_cert
            else None
        ),
        "passwordAuthentication": server.password_authentication,
    }


def upsert(
    s: Session,
    sub: str,
    rg: str,
    name: str,
    host: str,
    port: int,
    location: str,
    now: datetime,
    connection: Connection | None = None,
) -> tuple[Server, dict[str, Any]]:
    """Register a server or update it (PUT semantics: settings not given get their
    defaults). Returns the server and what changed among its address and connection
    settings ({"address": {"old": ..., "new": ...}, ...}; empty for a new server)."""
    c = connection or Connection()
    arm.check_name(name, "server")
    _check_address(host, port)
    _check_connection(c)
    tenancy.require_group(s, sub, rg)
    arm_id = arm.server_id(sub, rg, name)
    server = armstore.find(s, Server, arm_id)
    values: dict[str, Any] = {
        "host": host,
        "port": port,
        "sslmode": c.sslmode,
        "ssl_root_cert": c.ssl_root_cert,
        "password_authentication": c.password_authentication,
    }
    if server is None:
        created = armstore.create(
            s, Server, arm_id, sub, rg, name, regions.normalize(location), now, **values
        )
        return created, {}
    before = _settings(server)
    for key, value in values.items():
        setattr(server, key, value)
    server.location = regions.normalize(location)
    s.flush()
    after = _settings(server)
    changes = {k: {"old": before[k], "new": after[k]} for k in before if before[k] != after[k]}
    return server, changes


def get(s: Session, sub: str, rg: str, name: str) -> Server:
    missing = (
        f"PostgreSQL server {name!r} is not registered in resource group {rg!r}. "
        "Register it with `pgvault server add`."
    )
    return armstore.get(s, Server, arm.server_id(sub, rg, name), missing)


def get_by_id(s: Session, resource_id: str) -> Server:
    """The server named by a server or database ARM id."""
    rid = arm.parse(resource_id)
    name = rid.name_of("servers") or rid.name_of("flexibleServers")
    if not rid.resource_group or not name:
        raise BadRequest(
            f"{resource_id!r} does not name a PostgreSQL server.", code=Code.InvalidResourceId
        )
    return get(s, rid.subscription, rid.resource_group, name)


def list_servers(s: Session, sub: str, rg: str | None) -> list[Server]:
    return armstore.list_in(s, Server, sub, rg)


def delete(s: Session, server: Server, in_use: int) -> None:
    """Unregister a server; one that databases are still protected from is refused."""
    if in_use:
        raise Conflict(
            f"Server {server.name!r} has protected databases; stop protection first.",
            code=Code.UserErrorServerInUse,
        )
    s.delete(server)
