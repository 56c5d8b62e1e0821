"""Real network faults for end-to-end tests, no mocks: a TCP proxy between the Edge Functions
and PostgreSQL that a test cuts (every open connection ended, new ones refused) and restores,
either at once or when a chosen statement passes through it; and an HTTP proxy in front of the
local Stripe that runs a test's action when a chosen answer of Stripe passes through it, before
the function receives that answer (to cut the database exactly after Stripe acted)."""

from __future__ import annotations

import contextlib
import http.client
import socket
import struct
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# How long a cut waits for the server to end a connection it was cut from (its transaction
# rolled back or committed, its backend gone).
SETTLE_TIMEOUT = 10.0
CHUNK = 65536
# Headers that belong to one hop, not passed on.
HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "proxy-connection"}
)


class _Pair:
    """One proxied connection: the client's socket and the server's."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.lock = threading.Lock()
        self.ended = False
        self.muted = False

    def end(self) -> None:
        """End the connection as a network failure would for the client, after the server has
        received everything forwarded to it and ended its side (its backend gone)."""
        with self.lock:
            if self.ended:
                return
            self.ended = True
        # FIN after the forwarded bytes (never a reset, which could drop them): the server
        # reads them all, then end of file; whatever it answers is read and dropped.
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_WR)
        self.server.settimeout(SETTLE_TIMEOUT)
        with contextlib.suppress(OSError):
            while self.server.recv(CHUNK):
                pass
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class TcpProxy:
    """A TCP proxy on 127.0.0.1 in front of `upstream` (host, port).

    `cut()` ends every open connection (the server first reads what was forwarded to it and
    ends its side, so a transaction cut before its COMMIT is rolled back, one whose COMMIT
    passed is committed), and until `restore()` every new connection is reset as soon as it is
    made, before anything reaches the server: the database is unreachable. `cut_when(match)`
    cuts right after forwarding the first chunk a client sends for which `match(chunk)` is
    true."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.cuts = 0
        self.refused = 0
        self.is_cut = False
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._pairs: set[_Pair] = set()
        self._lock = threading.Lock()
        self._match: Callable[[bytes], bool] | None = None
        self._stopped = False

    def start(self) -> TcpProxy:
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.is_cut:
                self.refused += 1
                reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=SETTLE_TIMEOUT)
            except OSError:
                reset(client)
                continue
            client.settimeout(None)
            server.settimeout(None)
            pair = _Pair(client, server)
            with self._lock:
                cut = self.is_cut
                if not cut:
                    self._pairs.add(pair)
            if cut:
                pair.end()
                continue
            threading.Thread(target=self._client_to_server, args=(pair,), daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(pair,), daemon=True).start()

    def _client_to_server(self, pair: _Pair) -> None:
        try:
            while chunk := pair.client.recv(CHUNK):
                if pair.ended:
                    return
                match = self._match
                if match is not None and match(chunk):
                    # Nothing the server answers from here on reaches the client.
                    self._match = None
                    pair.muted = True
                    pair.server.sendall(chunk)
                    self.cut()
                    return
                pair.server.sendall(chunk)
        except OSError:
            pass
        self._drop(pair)

    def _server_to_client(self, pair: _Pair) -> None:
        try:
            while not pair.ended and (chunk := pair.server.recv(CHUNK)):
                if pair.ended or pair.muted:
                    return
                pair.client.sendall(chunk)
        except OSError:
            pass
        if not pair.ended:
            self._drop(pair)

    def _drop(self, pair: _Pair) -> None:
        with self._lock:
            self._pairs.discard(pair)
        pair.end()

    def cut(self) -> None:
        """The database unreachable: open connections ended, new ones reset."""
        with self._lock:
            self.is_cut = True
            pairs, self._pairs = set(self._pairs), set()
        for pair in pairs:
            pair.end()
        self.cuts += 1

    def cut_when(self, match: Callable[[bytes], bool]) -> None:
        """Cut right after forwarding the first chunk from a client that `match` accepts."""
        self._match = match

    def restore(self) -> None:
        """Reachable again."""
        self._match = None
        with self._lock:
            self.is_cut = False

    def stop(self) -> None:
        self._match = None
        self.cut()
        self._stopped = True
        self._listener.close()


def reset(sock: socket.socket) -> None:
    """Close `sock` with a reset (no orderly end), as a host refusing it would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@contextlib.contextmanager
def tcp_proxy(upstream: tuple[str, int]) -> Iterator[TcpProxy]:
    proxy = TcpProxy(upstream).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@dataclass
class _Hook:
    method: str
    path: str
    action: Callable[[], None]


class HttpTap:
    """An HTTP proxy in front of `upstream` (a base URL) that passes every request on and
    every answer back. `after(method, path, action)`: the first time an answer of `upstream`
    to that request passes with a 2xx status, `action()` runs before the answer is sent on."""

    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.hostname is None or parsed.port is None:
            raise ValueError(f"not a base URL with a host and port: {upstream}")
        self.upstream_host, self.upstream_port = parsed.hostname, parsed.port
        self._hook: _Hook | None = None
        self._lock = threading.Lock()
        self.fired: list[tuple[str, str, int]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def after(self, method: str, path: str, action: Callable[[], None]) -> None:
        with self._lock:
            self._hook = _Hook(method.upper(), path, action)

    def _take_hook(self, method: str, path: str, status: int) -> _Hook | None:
        with self._lock:
            hook = self._hook
            if (
                hook is None
                or not 200 <= status < 300
                or (hook.method, hook.path) != (method, urllib.parse.urlsplit(path).path)
            ):
                return None
            self._hook = None
            self.fired.append((method, path, status))
            return hook

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        tap = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                upstream = http.client.HTTPConnection(
                    tap.upstream_host, tap.upstream_port, timeout=30
                )
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                    got = [(k, v) for k, v in answer.getheaders() if k.lower() not in HOP_HEADERS]
                    status = answer.status
                finally:
                    upstream.close()
                hook = tap._take_hook(self.command, self.path, status)
                if hook is not None:
                    hook.action()
                self.send_response(status)
                for name, value in got:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._forward()

            def do_POST(self) -> None:
                self._forward()

            def do_DELETE(self) -> None:
                self._forward()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def start(self) -> HttpTap:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def http_tap(upstream: str) -> Iterator[HttpTap]:
    tap = HttpTap(upstream).start()
    try:
        yield tap
    finally:
        tap.stop()
