"""An HTTP proxy for tests that loses answers: it forwards every request to an upstream (the
local Stripe) and, for the requests a test marks, lets the upstream carry the request out but
closes the connection without answering, as a network cut or a timeout after Stripe acted does.

    with lossy_proxy(stripe_base) as proxy:
        proxy.lose("POST", "/v1/transfers", times=3)
        ... serve a function with STRIPE_API_BASE=proxy.url ...

An HTTP client may send a POST again once when its kept-alive connection closes without an
answer, so a test that wants one request's answer lost loses a few."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class LossyProxy:
    upstream: str
    url: str = ""
    # (method, path prefix) → how many more of its answers are lost.
    losing: dict[tuple[str, str], int] = field(default_factory=dict)
    # What was lost: "METHOD path -> status", in order.
    lost: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def lose(self, method: str, path_prefix: str, *, times: int = 1) -> None:
        """Lose the answers to the next `times` requests of `method` whose path starts so."""
        with self.lock:
            self.losing[(method, path_prefix)] = times

    def answer_all(self) -> None:
        """Lose nothing more."""
        with self.lock:
            self.losing.clear()

    def _loses(self, method: str, path: str, status: int) -> bool:
        with self.lock:
            for (lost_method, prefix), left in self.losing.items():
                if method == lost_method and path.startswith(prefix) and left > 0:
                    self.losing[(lost_method, prefix)] = left - 1
                    self.lost.append(f"{method} {path} -> {status}")
                    return True
        return False


@contextmanager
def lossy_proxy(upstream: str) -> Iterator[LossyProxy]:
    """A LossyProxy in front of `upstream` on a free local port, until the block ends."""
    proxy = LossyProxy(upstream.rstrip("/"))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            request = urllib.request.Request(  # noqa: S310
                proxy.upstream + self.path, data=body, headers=headers, method=self.command
            )
            got: Message
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
                    status, raw, got = answer.status, answer.read(), answer.headers
            except urllib.error.HTTPError as refused:
                status, raw, got = refused.code, refused.read(), refused.headers
            if proxy._loses(self.command, self.path, status):
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.send_response(status)
            for name, value in got.items():
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            self.forward()

        def do_POST(self) -> None:
            self.forward()

        def do_DELETE(self) -> None:
            self.forward()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    proxy.url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
