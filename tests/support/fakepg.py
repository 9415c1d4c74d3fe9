"""A fake PostgreSQL server that asks for a password and records what the client sends.

It plays the attacker of issue 8 finding 1: it refuses TLS (answers an SSLRequest or a
GSSENCRequest with ``N``, as a server without TLS does), reads the startup packet, then
asks for the password in the weakest way configured -- ``cleartext``
(AuthenticationCleartextPassword) or ``md5`` (AuthenticationMD5Password) -- and keeps
every byte the client sends afterwards. Tests assert that a password never shows up in
:attr:`FakePostgres.received`.

Loopback only; every socket has a timeout, and :meth:`FakePostgres.stop` joins the
threads, so a test cannot hang on it.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

HOST = "127.0.0.1"
_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_TIMEOUT = 5.0
_MAX_CONNECTIONS = 50


class FakePostgres:
    def __init__(self, method: str = "cleartext") -> None:
        assert method in ("cleartext", "md5")
        self.method = method
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((HOST, 0))
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        #: Every byte received after the startup packet, per connection.
        self.received: list[bytes] = []
        #: The startup packets (user, database, ...), per connection.
        self.startups: list[bytes] = []
        self.connections = 0
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    # -- what the client sent ---------------------------------------------------------------

    def saw(self, needle: str | bytes) -> bool:
        """Whether `needle` appears in anything any client sent."""
        data = needle.encode() if isinstance(needle, str) else needle
        with self._lock:
            return any(data in chunk for chunk in [*self.received, *self.startups])

    def password_messages(self) -> int:
        """How many connections answered the authentication request (a `p` message)."""
        with self._lock:
            return sum(1 for chunk in self.received if chunk[:1] == b"p")

    # -- the server ----------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                if self.connections > _MAX_CONNECTIONS:
                    conn.close()
                    continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _read(self, conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(_TIMEOUT)
        with conn, contextlib.suppress(OSError, ConnectionError):
            while True:  # SSLRequest / GSSENCRequest until the real startup packet
                (length,) = struct.unpack("!I", self._read(conn, 4))
                body = self._read(conn, length - 4)
                (code,) = struct.unpack("!I", body[:4])
                if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                    conn.sendall(b"N")
                    continue
                with self._lock:
                    self.startups.append(body)
                break
            if self.method == "cleartext":
                conn.sendall(b"R" + struct.pack("!II", 8, 3))
            else:
                conn.sendall(b"R" + struct.pack("!II", 12, 5) + b"salt")
            received = b""
            while len(received) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                received += chunk
                if received[:1] == b"p" and len(received) >= 5:
                    (length,) = struct.unpack("!I", received[1:5])
                    if len(received) >= length + 1:
                        break
            with self._lock:
                self.received.append(received)
            # Then fail the login, as a real server would with a wrong password.
            message = b"SFATAL\0C28P01\0Mpassword authentication failed\0\0"
            conn.sendall(b"E" + struct.pack("!I", len(message) + 4) + message)

    def stop(self) -> None:
        self._stop.set()
        self._acceptor.join(timeout=_TIMEOUT)
        self._sock.close()
        for thread in self._threads:
            thread.join(timeout=_TIMEOUT)


@contextlib.contextmanager
def fake_postgres(method: str = "cleartext") -> Iterator[FakePostgres]:
    server = FakePostgres(method)
    try:
        yield server
    finally:
        server.stop()
