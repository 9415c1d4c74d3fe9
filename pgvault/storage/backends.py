"""Object-store backends behind one interface (obstore): local directory, S3, Azure Blob, memory.

A `Location` is a store plus a key prefix. The vault datastore is given as a URL
(`file:///dir`, `s3://bucket/prefix?endpoint=...`, `az://container/prefix?...`,
`memory://`); storage-account containers are built from the account's settings.
Backends declare their part size and upload concurrency here, in one place, so
memory per stream is bounded: at most `PART_SIZE * (CONCURRENCY + 1)` in flight.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import obstore
from obstore.exceptions import AlreadyExistsError
from obstore.exceptions import BaseError as ObstoreError
from obstore.store import AzureStore, LocalStore, MemoryStore, S3Store

from pgvault.errors import BadRequest, Code, PgVaultError, StorageError

PART_SIZE = 5 << 20
CONCURRENCY = 3
READ_CHUNK = 4 << 20
# What the object store raises for its own failures (not found, denied, network).
STORE_ERRORS = (ObstoreError, OSError)


@dataclass
class Location:
    """A store and a key prefix inside it (no leading or trailing slash)."""

    store: Any
    prefix: str = ""
    description: str = ""
    local_root: Path | None = None

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def child(self, name: str) -> Location:
        return Location(self.store, self.key(name), self.description, self.local_root)

    def put_stream(self, name: str, chunks: Iterable[bytes]) -> None:
        """Stream `chunks` into one object (multipart); visible only when complete."""
        with _mapped(self, name):
            obstore.put(
                self.store,
                self.key(name),
                _from_source(chunks),
                chunk_size=PART_SIZE,
                max_concurrency=CONCURRENCY,
            )

    def put_bytes(self, name: str, data: bytes) -> None:
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

    def check_writable(self) -> None:
        """Prove we can write and delete here, before any data moves."""
        probe = ".pgvault-write-probe"
        self.put_bytes(probe, b"ok")
        with _mapped(self, probe):
            obstore.delete(self.store, self.key(probe))


def put_new(loc: Location, name: str, data: bytes) -> bool:
    """Write a small object only if none has that name yet; False if one exists.

    The store decides atomically: `O_EXCL` on a local directory, `If-None-Match: *` on S3
    and Azure Blob. Restores claim their file names with it ("restores never overwrite").
    """
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


def local_location(path: Path | str, description: str = "") -> Location:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return Location(LocalStore(prefix=path), "", description or str(path), path)


def s3_location(
    bucket: str,
    prefix: str,
    *,
    endpoint: str | None,
    region: str,
    access_key_id: str | None,
    secret_access_key: str | None,
    description: str = "",
) -> Location:
    kwargs: dict[str, Any] = {"region": region, "client_options": _client_options(endpoint)}
    if endpoint:
        kwargs["endpoint"] = endpoint
    if access_key_id:
        kwargs["access_key_id"] = access_key_id
        kwargs["secret_access_key"] = secret_access_key or ""
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
        kwargs["account_key"] = account_key
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
