"""Registered PostgreSQL servers: where databases are backed up from and restored to.

A server is registered by address and region only; credentials live in key-vault
secrets and are read fresh for every job, so a DBA can rotate them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
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


def upsert(
    s: Session, sub: str, rg: str, name: str, host: str, port: int, location: str, now: datetime
) -> Server:
    """Register a server or update its address (PUT semantics)."""
    arm.check_name(name, "server")
    _check_address(host, port)
    tenancy.require_group(s, sub, rg)
    arm_id = arm.server_id(sub, rg, name)
    server = armstore.find(s, Server, arm_id)
    if server is None:
        return armstore.create(
            s, Server, arm_id, sub, rg, name, regions.normalize(location), now, host=host, port=port
        )
    server.host, server.port, server.location = host, port, regions.normalize(location)
    s.flush()
    return server


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
