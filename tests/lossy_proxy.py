"""A small HTTP reverse proxy on 127.0.0.1 that can lose responses, for S3 tests on moto.

It forwards every request (method, path, query, headers, body) to one target endpoint on the
loopback interface and relays the answer. Armed with `drop_next(method, path_contains, count)`,
it forwards the next `count` matching requests (so their writes land) and then closes the
client's connection without a response: the client sees a lost response, and botocore retries
the very same request underneath the caller. That is how a conditional PUT that succeeded comes
back as 412 "already exists".

Invariants: it connects to nothing but the target, which must be on 127.0.0.1 or localhost;
every socket has a timeout (`SOCKET_TIMEOUT_S`); the request log keeps at most `LOG_ENTRIES_MAX`
entries; `stop()` closes every client connection it still holds.
"""
from __future__ import annotations

import collections
import http.client
import http.server
import socket
import threading
import urllib.parse
from dataclasses import dataclass

SOCKET_TIMEOUT_S = 30.0
LOG_ENTRIES_MAX = 10_000
BODY_BYTES_MAX = 256 * 2**20  # a request or response larger than this is refused, not buffered

# Hop-by-hop headers (RFC 9110 7.6.1) belong to one connection and are not forwarded. The proxy
# answers `Expect: 100-continue` itself and forwards whole bodies with a Content-Length.
_HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                         "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
                         "expect", "content-length"))


@dataclass(frozen=True)
class Exchange:
    """One request the proxy forwarded: what went in, what came back, and whether it was dropped."""
    method: str
    path: str  # path and query, as the client sent them
    headers: dict  # request headers, lower-case names
    request_bytes: int
    status: int
    response_bytes: int  # body bytes the target returned (whether or not the client got them)
    dropped: bool


@dataclass
class _DropRule:
    method: str
    path_contains: str
    remaining: int


class LossyProxy:
    """Reverse proxy to `target_endpoint` (http://127.0.0.1:PORT). Use `.endpoint` as endpoint_url."""

    def __init__(self, target_endpoint: str):
        target = urllib.parse.urlsplit(target_endpoint)
        if target.scheme != "http" or target.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError(f"LossyProxy only forwards to http on the loopback interface, "
                             f"not {target_endpoint!r}")
        self.target = (target.hostname, target.port or 80)
        self._lock = threading.Lock()
        self._rules: list[_DropRule] = []
        self._connections: set[socket.socket] = set()
        self.log: collections.deque[Exchange] = collections.deque(maxlen=LOG_ENTRIES_MAX)
        self.dropped = 0
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control --------------------------------------------------------------------------------

    def drop_next(self, method: str = "PUT", path_contains: str = "", count: int = 1) -> None:
        """Lose the response of the next `count` requests with `method` whose path (and query)
        contains `path_contains`. The requests still reach the target."""
        assert count >= 1, count
        with self._lock:
            self._rules.append(_DropRule(method.upper(), path_contains, count))

    def pending_drops(self) -> int:
        """How many armed drops have not happened yet."""
        with self._lock:
            return sum(r.remaining for r in self._rules)

    def exchanges(self, method: str | None = None, path_contains: str = "") -> list[Exchange]:
        """The logged exchanges, oldest first, optionally filtered like drop_next."""
        with self._lock:
            return [e for e in self.log if (method is None or e.method == method.upper())
                    and path_contains in e.path]

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()

    def _take_drop(self, method: str, path: str) -> bool:
        with self._lock:
            for rule in self._rules:
                if rule.method == method and rule.path_contains in path:
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._rules.remove(rule)
                    self.dropped += 1
                    return True
        return False

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self.log.append(exchange)

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start() the proxy first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "LossyProxy":
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.owner = self
        # A short poll interval keeps stop() quick; serve_forever checks for shutdown that often.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="lossy-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        with self._lock:
            connections = list(self._connections)
        # Handler threads blocked on an idle keep-alive connection wake up once it is shut down.
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        self._thread.join(SOCKET_TIMEOUT_S)
        self._server = None

    def __enter__(self) -> "LossyProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: LossyProxy

    def get_request(self):
        conn, addr = super().get_request()
        # Without TCP_NODELAY small requests and responses wait for delayed ACKs (~40 ms each).
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(SOCKET_TIMEOUT_S)
        with self.owner._lock:
            self.owner._connections.add(conn)
        return conn, addr

    def shutdown_request(self, request):
        with self.owner._lock:
            self.owner._connections.discard(request)
        super().shutdown_request(request)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    timeout = SOCKET_TIMEOUT_S
    owner: LossyProxy

    def setup(self):
        super().setup()
        self._upstream: http.client.HTTPConnection | None = None

    def finish(self):
        try:
            super().finish()
        finally:
            if self._upstream is not None:
                self._upstream.close()

    def log_message(self, format, *args):  # the exchange log replaces stderr noise
        pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers are dropped
                    return b"".join(chunks)
                total += size
                if total > BODY_BYTES_MAX:
                    raise ValueError("request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > BODY_BYTES_MAX:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length else b""

    def _forward(self):
        owner = self.owner
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        try:
            if self._upstream is None:
                self._upstream = http.client.HTTPConnection(*owner.target, timeout=SOCKET_TIMEOUT_S)
                # The Host header is the client's (it is part of the request signature).
            self._upstream.request(self.command, self.path, body=body, headers=headers,
                                   encode_chunked=False)
            response = self._upstream.getresponse()
            payload = response.read(BODY_BYTES_MAX + 1)
            if len(payload) > BODY_BYTES_MAX:
                raise ValueError("response body too large")
        except (OSError, http.client.HTTPException, ValueError):
            # The target failed or hung up: the client sees a closed connection, as it would
            # from a real proxy that lost its backend.
            if self._upstream is not None:
                self._upstream.close()
                self._upstream = None
            self.close_connection = True
            return
        if response.will_close:
            self._upstream.close()
            self._upstream = None
        dropped = owner._take_drop(self.command, self.path)
        owner._record(Exchange(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                               len(body), response.status, len(payload), dropped))
        if dropped:
            # The request reached the target; its answer is lost. Close without a byte back.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        if self.command == "HEAD":
            # A HEAD answer carries the object's length but no body.
            length = response.getheader("Content-Length")
            if length is not None:
                self.send_header("Content-Length", length)
        elif response.status >= 200 and response.status not in (204, 304):
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD" and payload:
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _forward
