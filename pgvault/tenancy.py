"""Subscriptions and resource groups: the top of every resource id and scope."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pgvault import arm, regions
from pgvault.errors import Code, NotFound
from pgvault.orm import Base, UTCDateTime

DEFAULT_RESOURCE_GROUP = "default"


class Subscription(Base):
    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(128))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ResourceGroup(Base):
    __tablename__ = "resource_groups"
    __table_args__ = (UniqueConstraint("subscription_id", "name_key"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    name: Mapped[str] = mapped_column(String(90))
    name_key: Mapped[str] = mapped_column(String(90))
    location: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


def ensure_default(s: Session, now: datetime) -> Subscription:
    """The default subscription and its `default` resource group, created on first start."""
    sub = s.scalar(select(Subscription).where(Subscription.is_default.is_(True)))
    if sub is None:
        sub = Subscription(
            id=str(uuid.uuid4()), display_name="default", is_default=True, created_at=now
        )
        s.add(sub)
        s.flush()
    if get_group(s, sub.id, DEFAULT_RESOURCE_GROUP, missing_ok=True) is None:
        create_group(s, sub.id, DEFAULT_RESOURCE_GROUP, "eastus", now)
    return sub


TENANT_DOMAIN = "pgvault"


def tenant_id(s: Session) -> str:
    """The installation's one tenant (Entra ID's directory id): a GUID derived from the
    default subscription's id, so it is stable and needs no table of its own."""
    sub = s.scalar(select(Subscription).where(Subscription.is_default.is_(True)))
    seed = sub.id if sub is not None else "pgvault"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"pgvault:tenant:{seed}"))


def get_subscription(s: Session, sub_id: str) -> Subscription:
    sub = s.get(Subscription, sub_id.lower())
    if sub is None:
        raise NotFound(
            f"Subscription {sub_id!r} not found. List subscriptions with GET /subscriptions.",
            code=Code.SubscriptionNotFound,
        )
    return sub


def list_subscriptions(s: Session) -> list[Subscription]:
    return list(s.scalars(select(Subscription).order_by(Subscription.created_at)))


def get_group(
    s: Session, sub_id: str, name: str, *, missing_ok: bool = False
) -> ResourceGroup | None:
    group = s.scalar(
        select(ResourceGroup).where(
            ResourceGroup.subscription_id == sub_id.lower(),
            ResourceGroup.name_key == name.lower(),
        )
    )
    if group is None and not missing_ok:
        raise NotFound(
            f"Resource group {name!r} could not be found in subscription {sub_id}. "
            "Create it first (PUT /subscriptions/{sub}/resourceGroups/{name}).",
            code=Code.ResourceGroupNotFound,
        )
    return group


def require_group(s: Session, sub_id: str, name: str) -> ResourceGroup:
    get_subscription(s, sub_id)
    group = get_group(s, sub_id, name)
    assert group is not None
    return group


def create_group(s: Session, sub_id: str, name: str, location: str, now: datetime) -> ResourceGroup:
    """Create (or return) a resource group; PUT semantics."""
    arm.check_name(name, "resource group")
    get_subscription(s, sub_id)
    group = get_group(s, sub_id, name, missing_ok=True)
    if group is None:
        group = ResourceGroup(
            subscription_id=sub_id.lower(),
            name=name,
            name_key=name.lower(),
            location=regions.normalize(location),
            created_at=now,
        )
        s.add(group)
        s.flush()
    return group
