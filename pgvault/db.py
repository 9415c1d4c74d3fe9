"""Metadata database: engines and sessions (SQLite by default, PostgreSQL when grown).

Services receive a `Database` and open short transactions with `db.session()`;
the session commits when the block ends and rolls back on error, so a service
never leaves half-written metadata behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

#: Connections kept open to a SQLite metadata file (more than the API's worker threads).
SQLITE_POOL_SIZE = 64
#: A pooled PostgreSQL connection idle longer than this is pinged before it is handed out.
PING_IDLE_SECONDS = 5.0
_RETURNED_AT = "pgvault_returned_at"


def _json_loads(text: str | bytes) -> Any:
    """JSON columns decoded by orjson (a page of jobs decodes one document per row), with
    the standard library's wider grammar (NaN, huge integers) as the fallback."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()


def _private_file(path: Path) -> None:
    """Create the SQLite file 0600 before SQLite does (its -wal and -shm files take the
    database file's mode), and tighten an existing one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_uid == os.geteuid():
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        side = path.with_name(path.name + suffix)
        with contextlib.suppress(OSError):
            if side.stat().st_uid == os.geteuid():
                os.chmod(side, 0o600)


def make_engine(url: str) -> Engine:
    """An engine for `url`; `postgresql://` URLs use psycopg 3."""
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            _private_file(Path(path))
        # Pooled connections sized for the API's thread pool: with SQLAlchemy's default
        # (5 + 10 overflow) most requests under load opened a new connection and ran the
        # PRAGMAs again (measured: a fifth of the server's request time; benchmarks/api_load.py).
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=SQLITE_POOL_SIZE,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url, pool_size=10, max_overflow=10, json_deserializer=_json_loads)
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before use only if it sat idle: SQLAlchemy's `pool_pre_ping`
    pings on every checkout, a round trip to the server per transaction that was a fifth of
    the PostgreSQL round trips of an API read under load (benchmarks/api_load.py). A
    connection that fails the ping is replaced (DisconnectionError makes the pool retry)."""

    def stamp(_dbapi: Any, record: Any) -> None:  # new or returned: not idle from here
        record.info[_RETURNED_AT] = time.monotonic()

    def checked_out(dbapi: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get(_RETURNED_AT, 0.0)
        if time.monotonic() - returned < PING_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi)
        except Exception as exc:
            raise DisconnectionError(f"metadata database connection lost: {exc}") from exc

    event.listen(engine, "connect", stamp)
    event.listen(engine, "checkin", stamp)
    event.listen(engine, "checkout", checked_out)


def _refuse_writes(session: Session, _ctx: Any, _instances: Any) -> None:
    """A read session that tries to write is a bug: on PostgreSQL it runs in autocommit,
    so a write there would not be atomic with the rest of the block."""
    if session.info.get("read_only"):
        raise RuntimeError("a Database.read() session tried to write; use Database.session()")


class Database:
    """The metadata database and its session factory."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Reads on PostgreSQL run in autocommit: no BEGIN and COMMIT round trips around
        # a request's SELECTs. Under READ COMMITTED every statement takes its own snapshot
        # either way, so the answers are the same. SQLite's driver does not BEGIN for reads.
        self.read_engine = (
            self.engine
            if self.is_sqlite
            else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._reads = sessionmaker(
            self.read_engine, expire_on_commit=False, autoflush=False, info={"read_only": True}
        )
        event.listen(self._reads, "before_flush", _refuse_writes)

    @property
    def sessions(self) -> sessionmaker[Session]:
        """The session factory, for session events (the job deferral hooks into commit)."""
        return self._sessions

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commit on success, roll back on error."""
        with self._sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for a block that only reads (the API's GETs): one round trip per query
        on PostgreSQL. A flush in it raises."""
        with self._reads() as s:
            yield s
            if s.new or s.deleted or any(s.is_modified(o) for o in s.dirty):
                raise RuntimeError("a Database.read() session changed rows; use Database.session()")

    @contextlib.contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """A Core connection for one cheap read (the access epoch of every API call)."""
        with self.read_engine.connect() as conn:
            yield conn

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def dispose(self) -> None:
        self.engine.dispose()
