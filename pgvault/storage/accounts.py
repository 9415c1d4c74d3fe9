"""Storage accounts and their containers: where "restore as files" writes dumps.

Kinds: `local` (a directory; containers are subdirectories), `s3` (one bucket;
containers are prefixes in it) and `azure` (an Azure Blob account, or Azurite;
containers are real blob containers). Access keys are encrypted at rest and
never returned. The account's blob endpoint, `{base}/blob/{account}/`, plus a
container name is the URL that restore-as-files takes as `targetDetails.url`.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import JSON, ForeignKey, LargeBinary, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pgvault import arm, armstore, regions, tenancy
from pgvault.armstore import ArmResource
from pgvault.crypto import Cipher
from pgvault.errors import BadRequest, Code, Conflict, StorageError, UserError
from pgvault.orm import Base, UTCDateTime
from pgvault.storage.backends import Location, azure_location, local_location, s3_location

KINDS = ("local", "s3", "azure")
SECRET_FIELDS = {"s3": "secretAccessKey", "azure": "accountKey"}


class StorageAccount(ArmResource, Base):
    __tablename__ = "storage_accounts"

    name: Mapped[str] = mapped_column(String(24), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    secret: Mapped[bytes | None] = mapped_column(LargeBinary)

    @property
    def arm_id(self) -> str:
        return arm.storage_account_id(self.subscription_id, self.resource_group, self.name)


class Container(Base):
    __tablename__ = "storage_containers"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("storage_accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


def blob_endpoint(base_url: str, account: str) -> str:
    return f"{base_url.rstrip('/')}/blob/{account}/"


def _settings(kind: str, backend: dict[str, Any]) -> dict[str, Any]:
    """Validate the non-secret settings of a backend kind."""

    def need(key: str) -> str:
        value = backend.get(key)
        if not isinstance(value, str) or not value:
            raise BadRequest(
                f"A {kind} storage account needs properties.backend.{key}.",
                code=Code.BadParameter,
                target=key,
            )
        return value

    if kind == "local":
        path = need("path")
        if not path.startswith("/"):
            raise BadRequest(
                "backend.path must be an absolute directory path.", code=Code.BadParameter
            )
        return {"path": path}
    if kind == "s3":
        out = {"bucket": need("bucket"), "region": backend.get("region") or "us-east-1"}
        for key in ("endpoint", "accessKeyId"):
            if backend.get(key):
                out[key] = str(backend[key])
        return out
    out = {"accountName": need("accountName")}
    if backend.get("endpoint"):
        out["endpoint"] = str(backend["endpoint"])
    return out


def create_account(
    s: Session,
    cipher: Cipher,
    sub: str,
    rg: str,
    name: str,
    location: str,
    kind: str,
    backend: dict[str, Any],
    now: datetime,
) -> StorageAccount:
    """Create a storage account (PUT); an existing one keeps its kind, settings may change."""
    arm.check_global_name(name, "storage account")
    tenancy.require_group(s, sub, rg)
    kind = (kind or "").lower()
    if kind not in KINDS:
        raise BadRequest(
            f"Unknown storage kind {kind!r}: use one of {', '.join(KINDS)}.", code=Code.BadParameter
        )
    settings = _settings(kind, backend)
    secret_value = backend.get(SECRET_FIELDS.get(kind, ""))
    arm_id = arm.storage_account_id(sub, rg, name)
    taken = Conflict(
        f"The storage account name {name!r} is already taken; names are global.",
        code=Code.StorageAccountAlreadyTaken,
    )
    account = armstore.find_global(s, StorageAccount, name, arm_id, taken)
    if account is None:
        account = armstore.create(
            s,
            StorageAccount,
            arm_id,
            sub,
            rg,
            name,
            regions.normalize(location),
            now,
            kind=kind,
            settings=settings,
        )
    elif account.kind != kind:
        raise Conflict(
            f"Storage account {name!r} is of kind {account.kind}; its kind cannot change.",
            code=Code.StorageAccountKindImmutable,
        )
    account.location = regions.normalize(location)
    account.settings = settings
    if secret_value:
        account.secret = cipher.encrypt(json.dumps({"key": secret_value}).encode(), account.id)
    s.flush()
    return account


def _secret(cipher: Cipher, account: StorageAccount) -> str | None:
    if account.secret is None:
        return None
    value: str = json.loads(cipher.decrypt(account.secret, account.id))["key"]
    return value


def get_account(s: Session, sub: str, rg: str, name: str) -> StorageAccount:
    missing = (
        f"Storage account {name!r} not found in resource group {rg!r}. "
        "Create it with `pgvault storage-account create`."
    )
    return armstore.get(s, StorageAccount, arm.storage_account_id(sub, rg, name), missing)


def list_accounts(s: Session, sub: str, rg: str | None) -> list[StorageAccount]:
    return armstore.list_in(s, StorageAccount, sub, rg)


def container_location(cipher: Cipher, account: StorageAccount, container: str) -> Location:
    """Where objects of `container` live, with the account's credentials."""
    cfg = account.settings
    desc = f"{account.name}/{container}"
    if account.kind == "local":
        return local_location(f"{cfg['path']}/{container}", description=desc)
    if account.kind == "s3":
        return s3_location(
            cfg["bucket"],
            container,
            endpoint=cfg.get("endpoint"),
            region=cfg.get("region", "us-east-1"),
            access_key_id=cfg.get("accessKeyId"),
            secret_access_key=_secret(cipher, account),
            description=desc,
        )
    return azure_location(
        container,
        "",
        account_name=cfg["accountName"],
        account_key=_secret(cipher, account),
        endpoint=cfg.get("endpoint"),
        description=desc,
    )


def _create_backend_container(cipher: Cipher, account: StorageAccount, name: str) -> None:
    """Make the container exist in the backend (obstore cannot create Azure containers).

    Only the backend's own refusals become UserErrorContainerNotAccessible; anything
    else (an undecryptable account key, a bug) keeps its type and code.
    """
    if account.kind == "azure":
        # Deferred: the Azure SDK is slow to import and only Azure accounts need it.
        from azure.core.exceptions import AzureError, ResourceExistsError
        from azure.storage.blob import BlobServiceClient

        cfg = account.settings
        endpoint = cfg.get("endpoint") or f"https://{cfg['accountName']}.blob.core.windows.net"
        credential = {"account_name": cfg["accountName"], "account_key": _secret(cipher, account)}
        try:
            client = BlobServiceClient(endpoint, credential=credential)
            with contextlib.suppress(ResourceExistsError):
                client.create_container(name)
        except (AzureError, ValueError) as exc:  # ValueError: a malformed endpoint URL
            raise _not_accessible(account, name, exc) from exc
    else:
        try:
            container_location(cipher, account, name).check_writable()
        except (StorageError, OSError) as exc:  # OSError: a local path pgvault cannot create
            raise _not_accessible(account, name, exc) from exc


def _not_accessible(account: StorageAccount, name: str, exc: Exception) -> UserError:
    return UserError(
        f"Could not create container {name!r} in storage account {account.name!r}: "
        f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}. "
        "Check the account's endpoint and credentials.",
        code=Code.UserErrorContainerNotAccessible,
    )


def create_container(
    s: Session, cipher: Cipher, account: StorageAccount, name: str, now: datetime
) -> Container:
    """Create a container (PUT, idempotent) in the account and in its backend."""
    arm.check_container_name(name)
    row = s.scalar(
        select(Container).where(Container.account_id == account.id, Container.name == name)
    )
    if row is not None:
        return row
    try:
        _create_backend_container(cipher, account, name)
    except Exception as exc:
        raise UserError(
            f"Could not create container {name!r} in storage account {account.name!r}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}. "
            "Check the account's endpoint and credentials.",
            code=Code.UserErrorContainerNotAccessible,
        ) from exc
    return armstore.add(s, Container(account_id=account.id, name=name, created_at=now))


def get_container(s: Session, account: StorageAccount, name: str) -> Container:
    return armstore.one(
        s,
        select(Container).where(Container.account_id == account.id, Container.name == name),
        f"Container {name!r} not found in storage account {account.name!r}. "
        "Create it with `pgvault storage-account container create`.",
        code=Code.ContainerNotFound,
    )


def list_containers(s: Session, account: StorageAccount) -> list[Container]:
    return list(
        s.scalars(
            select(Container).where(Container.account_id == account.id).order_by(Container.name)
        )
    )


def resolve_target(
    s: Session, url: str, arm_id: str | None = None
) -> tuple[StorageAccount, Container]:
    """The account and container named by a restore target URL (`.../blob/{a}/{c}`) or ARM id."""
    account_name = container_name = None
    if arm_id:
        rid = arm.parse(arm_id)
        account_name = rid.name_of("storageAccounts")
        container_name = rid.name_of("containers")
    if url and not (account_name and container_name):
        segs = [p for p in urlsplit(url).path.split("/") if p]
        lowered = [p.lower() for p in segs]
        if "blob" in lowered and len(segs) >= lowered.index("blob") + 3:
            i = lowered.index("blob")
            account_name, container_name = segs[i + 1], segs[i + 2]
        else:
            host = urlsplit(url).hostname or ""
            if ".blob." in host and segs:
                account_name, container_name = host.split(".", 1)[0], segs[0]
    if not account_name or not container_name:
        raise UserError(
            f"{url!r} does not name a storage container. Use the account's blob endpoint plus "
            "the container, e.g. 'http://HOST:PORT/blob/ACCOUNT/CONTAINER'.",
            code=Code.UserErrorContainerNotAccessible,
            target="targetDetails.url",
        )
    account = s.scalar(select(StorageAccount).where(StorageAccount.name == account_name.lower()))
    if account is None:
        raise UserError(
            f"Storage account {account_name!r} does not exist.",
            code=Code.UserErrorContainerNotAccessible,
            recommended_action="Create the storage account and container first.",
        )
    container = s.scalar(
        select(Container).where(
            Container.account_id == account.id, Container.name == container_name
        )
    )
    if container is None:
        raise UserError(
            f"Container {container_name!r} does not exist in storage account {account.name!r}.",
            code=Code.UserErrorContainerNotAccessible,
            recommended_action="Create it with `pgvault storage-account container create`.",
        )
    return account, container
