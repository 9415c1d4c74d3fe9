"""An HTTP CONNECT proxy for tests: names under one DNS suffix reach one local port.

Key vaults are hosts (`https://KV.vault.SUFFIX:PORT/`, as Azure's SDKs require) and a test
machine has no wildcard DNS, so clients that honour HTTPS_PROXY (requests: az, MSAL, the
Key Vault SDK) are pointed here; TLS stays end to end (the proxy only relays bytes, and the
client verifies the server's certificate for the key vault's name). Other names are refused.
"""

from __future__ import annotations

import contextlib
import select
import socket
import socketserver
import threading
from collections.abc import Iterator


class _Handler(socketserver.StreamRequestHandler):
    server: _Proxy

    def handle(self) -> None:
        line = self.rfile.readline(4096).decode("latin-1")
        while self.rfile.readline(4096) not in (b"\r\n", b"\n", b""):
            pass  # the request's headers
        parts = line.split()
        host = (parts[1] if len(parts) == 3 else "").rpartition(":")[0]
        if parts[:1] != ["CONNECT"] or not host.lower().endswith("." + self.server.suffix):
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            return
        with socket.create_connection(("127.0.0.1", self.server.target_port), timeout=30) as up:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            self._relay(self.connection, up)

    @staticmethod
    def _relay(a: socket.socket, b: socket.socket) -> None:
        while True:
            ready, _, _ = select.select([a, b], [], [], 60)
            if not ready:
                return
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                (b if sock is a else a).sendall(data)


class _Proxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, suffix: str, target_port: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.suffix = suffix.lower()
        self.target_port = target_port


@contextlib.contextmanager
def connect_proxy(suffix: str, target_port: int) -> Iterator[str]:
    """A running proxy (its `http://127.0.0.1:PORT` URL) for hosts under `suffix`."""
    proxy = _Proxy(suffix, target_port)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{proxy.server_address[1]}"
    finally:
        proxy.shutdown()
        proxy.server_close()
