"""Object-store backends behind one interface (obstore): local directory, S3, Azure Blob, memory.

A `Location` is a store plus a key prefix. The vault datastore is given as a URL
(`file:///dir`, `s3://bucket/prefix?endpoint=...`, `az://container/prefix?...`,
`memory://`); storage-account containers are built from the account's settings.
Backends declare their part size and upload concurrency here, in one place, so
memory per stream is bounded: at most `PART_SIZE * (CONCURRENCY + 1)` in flight.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import ipaddress
import os
import queue
import secrets
import shutil
import socket
import stat
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import obstore
from obstore.exceptions import AlreadyExistsError
from obstore.exceptions import BaseError as ObstoreError
from obstore.store import AzureStore, LocalStore, MemoryStore, S3Store

from pgvault.errors import BadRequest, Code, PgVaultError, StorageError, UserError

PART_SIZE = 5 << 20
CONCURRENCY = 3
READ_CHUNK = 4 << 20
#: Modes of what pgvault writes in a local store: its own objects, and restored files.
PRIVATE_FILE_MODE = 0o600
RESTORED_FILE_MODE = 0o640
DIR_MODE = 0o700
# What the object store raises for its own failures (not found, denied, network).
STORE_ERRORS = (ObstoreError, OSError)


@dataclass
class Location:
    """A store and a key prefix inside it (no leading or trailing slash)."""

    store: Any
    prefix: str = ""
    description: str = ""
    #: A local store's directory (canonical): writes there go through `_local_put`.
    local_root: Path | None = None
    #: Mode of the files written in a local store (umask-independent).
    file_mode: int = PRIVATE_FILE_MODE

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def child(self, name: str) -> Location:
        return dataclasses.replace(self, prefix=self.key(name))

    def put_stream(self, name: str, chunks: Iterable[bytes]) -> None:
        """Stream `chunks` into one object (multipart); visible only when complete."""
        if self.local_root is not None:
            with _mapped(self, name):
                _local_put(self.local_root, self.key(name), _from_source(chunks), self.file_mode)
            return
        with _mapped(self, name):
            obstore.put(
                self.store,
                self.key(name),
                _from_source(chunks),
                chunk_size=PART_SIZE,
                max_concurrency=CONCURRENCY,
            )

    def put_bytes(self, name: str, data: bytes) -> None:
        if self.local_root is not None:
            with _mapped(self, name):
                _local_put(self.local_root, self.key(name), [data], self.file_mode)
            return
        with _mapped(self, name):
            obstore.put(self.store, self.key(name), data)

    def get_stream(self, name: str) -> Iterator[bytes]:
        """The object's bytes as a stream of bounded chunks."""
        with _mapped(self, name):
            result = obstore.get(self.store, self.key(name))
        it = iter(result.stream(min_chunk_size=READ_CHUNK))
        while True:
            with _mapped(self, name):
                chunk = next(it, None)
            if chunk is None:
                return
            yield bytes(chunk)

    def get_bytes(self, name: str) -> bytes:
        with _mapped(self, name):
            return bytes(obstore.get(self.store, self.key(name)).bytes())

    def exists(self, name: str) -> bool:
        try:
            obstore.head(self.store, self.key(name))
        except FileNotFoundError:
            return False
        except STORE_ERRORS as exc:
            raise _translate(exc, self, name) from exc
        return True

    def list(self) -> list[str]:
        """Names of all objects under this location, relative to it."""
        with _mapped(self, ""):
            keys = [
                meta["path"]
                for batch in obstore.list(self.store, self.prefix or None)
                for meta in batch
            ]
        cut = len(self.prefix) + 1 if self.prefix else 0
        return [k[cut:] for k in keys]

    def delete(self, name: str) -> None:
        """Delete one object; a missing object is not an error."""
        try:
            obstore.delete(self.store, self.key(name))
        except FileNotFoundError:
            pass
        except STORE_ERRORS as exc:
            raise _translate(exc, self, name) from exc

    def delete_all(self) -> None:
        """Delete every object under this location (idempotent).

        On a local directory this also removes uploads that a killed process left
        half-written (obstore names them `name#N` and does not list them).
        """
        names = self.list()
        if names:
            with _mapped(self, ""):
                obstore.delete(self.store, [self.key(n) for n in names])
        if self.local_root is not None and self.prefix:
            shutil.rmtree(self.local_root / self.prefix, ignore_errors=True)

    def commit(self, src: str, dst: str) -> bool:
        """Give a finished object its final name, never replacing one (False if `dst`
        exists): how a restore's files become visible only once every checksum matched.
        Local: linked into place; object stores: renamed after an existence check (the
        restore's claim on its prefix keeps other pgvault restores away)."""
        if self.local_root is None:
            if self.exists(dst):
                return False
            with _mapped(self, dst):
                obstore.rename(self.store, self.key(src), self.key(dst), overwrite=True)
            return True
        sparts, dparts = self.key(src).split("/"), self.key(dst).split("/")
        if sparts[:-1] != dparts[:-1]:
            raise ValueError("a commit stays in one directory")
        with _mapped(self, dst):
            dir_fd = _open_dir(self.local_root.joinpath(*sparts[:-1]))
        try:
            try:
                os.link(
                    sparts[-1],
                    dparts[-1],
                    src_dir_fd=dir_fd,
                    dst_dir_fd=dir_fd,
                    follow_symlinks=False,
                )
            except FileExistsError:
                return False
            except OSError as exc:
                raise _translate(exc, self, dst) from exc
            os.unlink(sparts[-1], dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        return True

    def check_writable(self) -> None:
        """Prove we can write and delete here, before any data moves.

        Each probe has its own name: concurrent checks of one container (two restores
        validated at once) must not delete each other's probe.
        """
        probe = f".pgvault-write-probe-{uuid.uuid4().hex}"
        self.put_bytes(probe, b"ok")
        with _mapped(self, probe):
            obstore.delete(self.store, self.key(probe))


def put_new(loc: Location, name: str, data: bytes) -> bool:
    """Write a small object only if none has that name yet; False if one exists.

    The store decides atomically: `O_EXCL` on a local directory, `If-None-Match: *` on S3
    and Azure Blob. Restores claim their file names with it ("restores never overwrite").
    """
    if loc.local_root is not None:  # pgvault's own writer: modes and no symlink followed
        with _mapped(loc, name):
            try:
                _local_put(loc.local_root, loc.key(name), [data], loc.file_mode, exclusive=True)
            except FileExistsError:
                return False
        return True
    try:
        obstore.put(loc.store, loc.key(name), data, mode="create")
    except AlreadyExistsError:
        return False
    except STORE_ERRORS as exc:
        raise _translate(exc, loc, name) from exc
    return True


def pumped(source: Callable[[], Iterator[bytes]], depth: int = 4) -> Iterator[bytes]:
    """Run `source()` in its own thread, handing chunks over through a bounded queue.

    obstore drives an upload's iterator from inside its runtime, where another
    obstore call (a download feeding the upload) would deadlock; the thread keeps
    the two apart. At most `depth` chunks wait in between, so memory stays bounded.
    """
    q: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for chunk in source():
                while not stop.is_set():
                    try:
                        q.put(("data", chunk), timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as exc:
            q.put(("error", exc))

    thread = threading.Thread(target=produce, name="pgvault-pump", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "data":
                yield item  # type: ignore[misc]
            elif kind == "error":
                raise item  # type: ignore[misc]
            else:
                return
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.1)


def _from_source(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """An upload's chunks; a failing source is reported as itself, never as a storage error.

    The source (pg_dump's output, another store's download) runs inside obstore's
    upload: its own PgVaultError passes through, anything else becomes an internal
    error that names the exception's type.
    """
    try:
        yield from chunks
    except PgVaultError:
        raise
    except Exception as exc:
        text = str(exc).splitlines()[0][:300] if str(exc) else ""
        raise PgVaultError(
            f"The data to upload could not be produced ({type(exc).__name__}: {text}).",
            code=Code.InternalError,
        ) from exc


class _mapped:
    """Translate object-store exceptions into StorageError with the location named.

    Only the store's own failures (obstore's errors, OSError) are translated; other
    exceptions keep their type, so a bug is not reported as a storage outage.
    """

    def __init__(self, loc: Location, name: str) -> None:
        self.loc, self.name = loc, name

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> Literal[False]:
        if isinstance(exc, STORE_ERRORS):
            raise _translate(exc, self.loc, self.name) from exc
        return False


def _translate(exc: Exception, loc: Location, name: str) -> PgVaultError:
    where = f"{loc.description or 'storage'}:{loc.key(name)}"
    if isinstance(exc, FileNotFoundError):
        return StorageError(
            f"Object not found at {where}. The container or object may have been deleted.",
            code=Code.StorageObjectNotFound,
        )
    text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    return StorageError(f"Storage operation failed at {where}: {text}", retryable=True)


def _client_options(endpoint: str | None) -> dict[str, Any]:
    return {"allow_http": True} if endpoint and endpoint.startswith("http://") else {}


def _open_dir(path: Path, create_from: int | None = None) -> int:
    """An O_DIRECTORY descriptor of the absolute `path`, walked one component at a time from
    `/` without following any symlink (a symlink anywhere fails with ELOOP or ENOTDIR).
    Components from index `create_from` of `path.parts` on are created (mode 0700) if missing."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, part in enumerate(path.parts[1:], start=1):
            if part in ("", ".", ".."):
                raise OSError(errno.EINVAL, "invalid path component", str(path))
            try:
                nfd = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError:
                if create_from is None or i < create_from:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, DIR_MODE, dir_fd=fd)
                nfd = os.open(part, flags, dir_fd=fd)
                os.fchmod(nfd, DIR_MODE)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _local_put(
    root: Path, key: str, chunks: Iterable[bytes], mode: int, *, exclusive: bool = False
) -> None:
    """Write one object under `root` without following symlinks: missing directories are
    made 0700, the data goes to a new temporary file (O_EXCL | O_NOFOLLOW, `mode` set
    whatever the umask) renamed into place, so a symlink planted in the store is replaced,
    never written through. `exclusive`: linked into place instead, which fails with
    FileExistsError if anything (a file, a symlink) already has the name."""
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise OSError(errno.EINVAL, "invalid object name", key)
    dir_fd = _open_dir(root.joinpath(*parts[:-1]), create_from=len(root.parts))
    try:
        # obstore's naming for an unfinished upload (`name#N`): not listed, swept by delete_all.
        tmp = f"{parts[-1]}#{secrets.randbelow(10**9)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, mode, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), mode)
                for chunk in chunks:
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            if exclusive:
                os.link(tmp, parts[-1], src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
                os.unlink(tmp, dir_fd=dir_fd)
            else:
                os.rename(tmp, parts[-1], src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def private_dir(path: Path) -> Path:
    """Make `path` (and missing parents) a directory of mode 0700; returns its canonical path.
    An existing directory is tightened to 0700 when pgvault owns it."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    real = Path(os.path.realpath(path))
    st = real.stat()
    if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != DIR_MODE:
        os.chmod(real, DIR_MODE)
    return real


def local_location(
    path: Path | str, description: str = "", file_mode: int = PRIVATE_FILE_MODE
) -> Location:
    """A local directory store (made 0700 if missing); its writes follow no symlink."""
    real = private_dir(Path(path))
    return Location(LocalStore(prefix=real), "", description or str(path), real, file_mode)


def container_dir_location(root: Path, path: Path, description: str) -> Location:
    """A local account's container `path` (canonical, inside the canonical `root`): its
    missing directories are made without following symlinks, and the files written there
    (restored dumps) get RESTORED_FILE_MODE."""
    fd = _open_dir(path, create_from=len(root.parts))
    os.close(fd)
    return Location(LocalStore(prefix=path), "", description, path, RESTORED_FILE_MODE)


def s3_location(
    bucket: str,
    prefix: str,
    *,
    endpoint: str | None,
    region: str,
    access_key_id: str | None,
    secret_access_key: str | None,
    description: str = "",
    session_token: str | None = None,
) -> Location:
    """An S3 location. Given a key, it signs with that key only: a static credential
    provider replaces the environment / config file / instance-metadata chain (and any
    AWS_SESSION_TOKEN in the environment: only `session_token` is sent, which only the
    operator's datastore passes), and signing cannot be switched off."""
    kwargs: dict[str, Any] = {"region": region, "client_options": _client_options(endpoint)}
    if endpoint:
        kwargs["endpoint"] = endpoint
    if access_key_id:
        credential = {
            "access_key_id": access_key_id,
            "secret_access_key": secret_access_key or "",
            "token": session_token,
            "expires_at": None,
        }
        kwargs["credential_provider"] = lambda: credential
        kwargs["skip_signature"] = False
    store = S3Store(bucket, **kwargs)
    return Location(store, prefix.strip("/"), description or f"s3://{bucket}")


def azure_location(
    container: str,
    prefix: str,
    *,
    account_name: str,
    account_key: str | None,
    endpoint: str | None,
    description: str = "",
) -> Location:
    kwargs: dict[str, Any] = {
        "account_name": account_name,
        "client_options": _client_options(endpoint),
    }
    if account_key:
        # Only this key: no bearer token, SAS or managed identity from the environment.
        credential = {"access_key": account_key, "expires_at": None}
        kwargs["credential_provider"] = lambda: credential
        kwargs["skip_signature"] = False
        kwargs["use_emulator"] = False
    if endpoint:
        kwargs["endpoint"] = endpoint
    store = AzureStore(container, **kwargs)
    return Location(store, prefix.strip("/"), description or f"az://{container}")


def from_url(url: str) -> Location:
    """The vault datastore named by a URL; credentials come from the environment.

    `file:///abs/dir` · `memory://` · `s3://bucket/prefix?endpoint=URL&region=R`
    (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) · `az://container/prefix?account=A&endpoint=URL`
    (AZURE_STORAGE_ACCOUNT_KEY).
    """
    u = urlsplit(url)
    q = dict(parse_qsl(u.query))
    if u.scheme == "file":
        return local_location(unquote(u.path), description="datastore")
    if u.scheme == "memory":
        return Location(MemoryStore(), "", "memory")
    if u.scheme == "s3":
        return s3_location(
            u.netloc,
            u.path,
            endpoint=q.get("endpoint"),
            region=q.get("region", "us-east-1"),
            access_key_id=os.environ.get("AWS_ACCESS_KEY_ID"),
            secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
            session_token=os.environ.get("AWS_SESSION_TOKEN"),
            description="datastore",
        )
    if u.scheme in ("az", "azure", "abfs"):
        return azure_location(
            u.netloc,
            u.path,
            account_name=q.get("account", os.environ.get("AZURE_STORAGE_ACCOUNT_NAME", "")),
            account_key=os.environ.get("AZURE_STORAGE_ACCOUNT_KEY"),
            endpoint=q.get("endpoint"),
            description="datastore",
        )
    raise BadRequest(
        f"Unsupported datastore URL scheme {u.scheme!r}: use file://, s3://, az:// or memory://.",
        code=Code.InvalidDatastoreUrl,
    )


#: Addresses no storage endpoint may have, whatever the operator allows: link-local
#: (169.254.0.0/16 holds the cloud instance-metadata services) and other metadata services.
_ALWAYS_DENIED = tuple(
    ipaddress.ip_network(n)
    for n in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32")
)
PATH_REFUSED = (
    "backend.path is not allowed: a local storage account must be a directory under the "
    "local storage roots the operator configured (PGVAULT_LOCAL_STORAGE_ROOTS), outside "
    "pgvault's own state."
)
ENDPOINT_REFUSED = (
    "The storage endpoint is not allowed or could not be resolved. Use an endpoint that the "
    "operator allows (PGVAULT_STORAGE_ENDPOINT_ALLOW / PGVAULT_STORAGE_ENDPOINT_DENY)."
)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    addr = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@dataclass(frozen=True)
class StoragePolicy:
    """What storage accounts may point at: local directories under the operator's roots
    (never pgvault's own state), and endpoints the operator's allow/deny lists admit."""

    local_roots: tuple[Path, ...]
    protected: tuple[Path, ...] = ()
    endpoint_allow: tuple[str, ...] = ()
    endpoint_deny: tuple[str, ...] = ()

    # -- local paths -------------------------------------------------------------------

    def _refuse_path(self) -> UserError:
        return UserError(PATH_REFUSED, code=Code.StoragePathNotAllowed, target="backend.path")

    def local_root_of(self, path: str) -> tuple[Path, Path]:
        """The canonical form of `path` (symlinks resolved) and the root it lies under;
        StoragePathNotAllowed, the same for every reason, when it is not allowed."""
        if not path.startswith("/") or "\x00" in path:
            raise self._refuse_path()
        real = Path(os.path.realpath(path))
        root = next(
            (
                r
                for r in (Path(os.path.realpath(r)) for r in self.local_roots)
                if real.is_relative_to(r)
            ),
            None,
        )
        if root is None:
            raise self._refuse_path()
        for p in (Path(os.path.realpath(p)) for p in self.protected):
            if real.is_relative_to(p) or p.is_relative_to(real):
                raise self._refuse_path()
        if os.path.lexists(real) and not real.is_dir():
            raise self._refuse_path()
        return real, root

    def local_container(self, account_path: str, container: str, description: str) -> Location:
        """A local account's container, checked again now: the account's path must still be
        canonical (no symlink swapped in) and allowed; writes there follow no symlink."""
        real, root = self.local_root_of(account_path)
        if str(real) != account_path.rstrip("/") and account_path != "/":
            raise self._refuse_path()
        if not container or "/" in container or container in (".", ".."):
            raise self._refuse_path()
        try:
            return container_dir_location(root, real / container, description)
        except OSError as exc:
            raise self._refuse_path() from exc

    # -- endpoints ---------------------------------------------------------------------

    def _listed(self, entries: tuple[str, ...], host: str, addr: Any) -> bool:
        for entry in entries:
            try:
                if addr in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                if entry.lower().rstrip(".") == host:
                    return True
        return False

    def check_endpoint(self, url: str) -> None:
        """Refuse (StorageEndpointNotAllowed, one message for every reason) an endpoint whose
        host resolves to any address that is link-local or a metadata service, denied, or
        loopback / private / otherwise not global without being allowed."""
        refused = UserError(
            ENDPOINT_REFUSED, code=Code.StorageEndpointNotAllowed, target="backend.endpoint"
        )
        try:
            u = urlsplit(url)
            host = (u.hostname or "").lower().rstrip(".")
            port = u.port or (443 if u.scheme == "https" else 80)
        except ValueError:
            raise refused from None
        if u.scheme not in ("http", "https") or not host:
            raise refused
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addrs = {_ip(str(info[4][0])) for info in infos}
        except (OSError, UnicodeError, ValueError):
            raise refused from None
        if not addrs:
            raise refused
        for addr in addrs:
            if addr.is_link_local or any(addr in n for n in _ALWAYS_DENIED):
                raise refused
            if self._listed(self.endpoint_deny, host, addr):
                raise refused
            if not addr.is_global and not self._listed(self.endpoint_allow, host, addr):
                raise refused
