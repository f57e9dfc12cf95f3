"""A fault-injecting HTTP proxy for S3 tests: sits on 127.0.0.1 in front of moto's server.

Clients (boto3, unpatched) talk to the proxy as if it were the store. Each
request is either forwarded to moto and its answer relayed, or answered with a
fault: ``503 SlowDown`` (S3's throttling reply) or a connection reset (the
socket is closed with SO_LINGER 0, so the client sees ECONNRESET). Which
requests fail is decided by a policy the test sets and can change while the
proxy runs.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

__all__ = ["FaultProxy", "every", "outage", "clean"]

SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>")

#: policy(request_number, method, path) -> None (forward), "slowdown" or "reset"
Policy = Callable[[int, str, str], "str | None"]


def clean(n: int, method: str, path: str) -> str | None:
    return None


def every(k: int, faults=("slowdown", "reset")) -> Policy:
    """Every k-th request fails, cycling through ``faults``."""
    def policy(n, method, path):
        return faults[(n // k) % len(faults)] if n % k == k - 1 else None
    return policy


def outage(fault: str = "slowdown") -> Policy:
    """Every request fails."""
    return lambda n, method, path: fault


class FaultProxy:
    """``with FaultProxy(target) as proxy:`` ... ``proxy.url`` ... ``proxy.policy = every(3)``."""

    def __init__(self, target: str, policy: Policy = clean):
        self.target = urlsplit(target)
        self.policy = policy
        self.count = 0
        self.faults: dict[str, int] = {}
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    n = proxy.count
                    proxy.count += 1
                    fault = proxy.policy(n, self.command, self.path)
                    if fault:
                        proxy.faults[fault] = proxy.faults.get(fault, 0) + 1
                if fault == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if fault == "slowdown":
                    self.send_response(503, "Slow Down")
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOWDOWN)))
                    self.end_headers()
                    self.wfile.write(SLOWDOWN)
                    return
                conn = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
