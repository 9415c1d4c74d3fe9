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
import logging
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import JSON, ForeignKey, LargeBinary, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pgvault import arm, armstore, regions, tenancy
from pgvault.armstore import ArmResource
from pgvault.crypto import Cipher
from pgvault.errors import BadRequest, Code, Conflict, PgVaultError, StorageError, UserError
from pgvault.orm import Base, UTCDateTime
from pgvault.storage.backends import Location, StoragePolicy, azure_location, s3_location

log = logging.getLogger(__name__)

KINDS = ("local", "s3", "azure")
SECRET_FIELDS = {"s3": "secretAccessKey", "azure": "accountKey"}
#: Settings that say where an account's key is sent: changing one needs the key again.
BINDING_FIELDS = {
    "s3": ("endpoint", "bucket", "region", "accessKeyId"),
    "azure": ("endpoint", "accountName"),
}


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


def _settings(kind: str, backend: dict[str, Any], policy: StoragePolicy) -> dict[str, Any]:
    """Validate the non-secret settings of a backend kind against the operator's policy:
    a local path is stored canonical (symlinks resolved) and under a local storage root;
    an endpoint must pass the allow/deny lists."""

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
        real, _root = policy.local_root_of(path)
        return {"path": str(real)}
    if kind == "s3":
        out = {"bucket": need("bucket"), "region": backend.get("region") or "us-east-1"}
        if not isinstance(backend.get("accessKeyId"), str) or not backend["accessKeyId"]:
            raise _key_required(kind)
        out["accessKeyId"] = backend["accessKeyId"]
        if backend.get("endpoint"):
            out["endpoint"] = str(backend["endpoint"])
    else:
        out = {"accountName": need("accountName")}
        if backend.get("endpoint"):
            out["endpoint"] = str(backend["endpoint"])
    if "endpoint" in out:
        policy.check_endpoint(out["endpoint"])
    return out


def _key_required(kind: str) -> BadRequest:
    field = SECRET_FIELDS[kind]
    return BadRequest(
        f"A {kind} storage account authenticates only with the key stored with it: give "
        f"properties.backend.{field} when creating the account and whenever its "
        f"{', '.join(BINDING_FIELDS[kind])} change.",
        code=Code.StorageAccountKeyRequired,
        target=field,
    )


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
    policy: StoragePolicy,
) -> StorageAccount:
    """Create a storage account (PUT); an existing one keeps its kind, settings may change.

    An S3 or Azure account needs its key at creation, and again whenever a setting that
    says where the key goes (endpoint, bucket, region, key id, account name) changes."""
    arm.check_global_name(name, "storage account")
    tenancy.require_group(s, sub, rg)
    kind = (kind or "").lower()
    if kind not in KINDS:
        raise BadRequest(
            f"Unknown storage kind {kind!r}: use one of {', '.join(KINDS)}.", code=Code.BadParameter
        )
    settings = _settings(kind, backend, policy)
    secret_value = backend.get(SECRET_FIELDS.get(kind, ""))
    arm_id = arm.storage_account_id(sub, rg, name)
    taken = Conflict(
        f"The storage account name {name!r} is already taken; names are global.",
        code=Code.StorageAccountAlreadyTaken,
    )
    account = armstore.find_global(s, StorageAccount, name, arm_id, taken)
    if kind in SECRET_FIELDS and not secret_value:
        previous = account.settings if account is not None and account.kind == kind else None
        if previous is None or account is None or account.secret is None:
            raise _key_required(kind)
        if any(previous.get(k) != settings.get(k) for k in BINDING_FIELDS[kind]):
            raise _key_required(kind)
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


def container_location(
    cipher: Cipher, account: StorageAccount, container: str, policy: StoragePolicy
) -> Location:
    """Where objects of `container` live, with the account's own credentials only; the
    account's path or endpoint is checked against the policy again now."""
    cfg = account.settings
    desc = f"{account.name}/{container}"
    if account.kind == "local":
        return policy.local_container(cfg["path"], container, desc)
    if cfg.get("endpoint"):
        policy.check_endpoint(cfg["endpoint"])
    if account.secret is None:
        raise _key_required(account.kind)
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


def _create_backend_container(
    cipher: Cipher, account: StorageAccount, name: str, policy: StoragePolicy
) -> None:
    """Make the container exist in the backend (obstore cannot create Azure containers).

    Only the backend's own refusals become UserErrorContainerNotAccessible; anything
    else (an undecryptable account key, a bug, a refused path or endpoint) keeps its
    type and code.
    """
    if account.kind == "azure":
        if account.settings.get("endpoint"):
            policy.check_endpoint(account.settings["endpoint"])
        if account.secret is None:
            raise _key_required(account.kind)
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
            location = container_location(cipher, account, name, policy)
        except OSError as exc:
            raise _not_accessible(account, name, exc) from exc
        try:
            location.check_writable()
        except (StorageError, OSError) as exc:
            raise _not_accessible(account, name, exc) from exc


def _not_accessible(account: StorageAccount, name: str, exc: Exception) -> UserError:
    """One message whatever the backend said (refused, closed port, timeout, missing
    directory): the caller learns nothing about what is reachable from the server."""
    log.info("container %s/%s not accessible: %s", account.name, name, exc)
    return UserError(
        f"Could not create container {name!r} in storage account {account.name!r}: the "
        "storage refused the request or could not be reached. "
        "Check the account's endpoint and credentials.",
        code=Code.UserErrorContainerNotAccessible,
    )


def create_container(
    s: Session,
    cipher: Cipher,
    account: StorageAccount,
    name: str,
    now: datetime,
    policy: StoragePolicy,
) -> Container:
    """Create a container (PUT, idempotent) in the account and in its backend."""
    arm.check_container_name(name)
    row = s.scalar(
        select(Container).where(Container.account_id == account.id, Container.name == name)
    )
    if row is not None:
        return row
    try:
        _create_backend_container(cipher, account, name, policy)
    except PgVaultError:
        raise
    except Exception as exc:
        raise _not_accessible(account, name, exc) from exc
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
