"""Registered PostgreSQL servers: where databases are backed up from and restored to.

A server is registered by address and region only; credentials live in key-vault
secrets and are read fresh for every job, so a DBA can rotate them.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Integer, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pgvault import arm, regions, tenancy
from pgvault.db import Base, UTCDateTime
from pgvault.errors import BadRequest, Code, NotFound


class Server(Base):
    __tablename__ = "servers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    arm_key: Mapped[str] = mapped_column(String(400), unique=True)
    name: Mapped[str] = mapped_column(String(63))
    subscription_id: Mapped[str] = mapped_column(String(36))
    resource_group: Mapped[str] = mapped_column(String(90))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    location: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

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
    key = arm.server_id(sub, rg, name).lower()
    server = s.scalar(select(Server).where(Server.arm_key == key))
    if server is None:
        server = Server(
            id=str(uuid.uuid4()),
            arm_key=key,
            name=name,
            subscription_id=sub.lower(),
            resource_group=rg,
            created_at=now,
            host=host,
            port=port,
            location=regions.normalize(location),
        )
        s.add(server)
    else:
        server.host, server.port, server.location = host, port, regions.normalize(location)
    s.flush()
    return server


def get(s: Session, sub: str, rg: str, name: str) -> Server:
    server = s.scalar(select(Server).where(Server.arm_key == arm.server_id(sub, rg, name).lower()))
    if server is None:
        raise NotFound(
            f"PostgreSQL server {name!r} is not registered in resource group {rg!r}. "
            "Register it with `pgvault server add`.",
            code=Code.ResourceNotFound,
        )
    return server


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
    q = select(Server).where(Server.subscription_id == sub.lower())
    if rg:
        q = q.where(func.lower(Server.resource_group) == rg.lower())
    return list(s.scalars(q.order_by(Server.name)))
