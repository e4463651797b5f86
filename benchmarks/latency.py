"""Realistic S3 latency for the peer benchmarks: moto's S3 server in its own process, and an
HTTP/1.1 forwarding proxy, also in its own process, that delays every response by a modelled
amount and counts requests per S3 operation class.

Invariants:
- Everything binds 127.0.0.1 only, on a port the kernel picks (port 0), reported back to the
  parent through a pipe. Child processes are started with the spawn method, so they share no
  GIL and no inherited state with the benchmarked client.
- The context manager that starts a child stops it on exit, even on error: it closes the
  control pipe (the child's signal to stop cleanly), then terminates and finally kills it if
  it has not exited within `STOP_TIMEOUT_S`. A child whose parent dies sees the same end of
  file and stops too.
- The proxy delays only the response, once the whole request has been received: it forwards
  the request, reads moto's whole response, then sleeps `model.delay_s(op, request body bytes
  + response body bytes)` minus the time moto took, never less than zero. So a client sees
  max(model, moto) per request, not model + moto; with `NONE` it never sleeps.
- Request and response bodies are buffered whole (at most `BODY_BYTES_MAX` each) and sent on
  with a Content-Length; `Expect: 100-continue` is answered by the proxy itself.
- The counters live in shared memory and are updated before the response is written, so once a
  client holds a response, `stats()` includes that request.

The latency model is a model, not a measurement of S3: a lognormal time to first byte per
operation class, given as (median, p99), plus body bytes at a per-connection throughput. It
has no connection set-up cost (the proxy keeps client connections alive), no throttling
(503 SlowDown), no cold/hot object effects and no correlation between requests. The numbers
are chosen from these sources:

- AWS, "Best Practices Design Patterns: Optimizing Amazon S3 Performance", section "Timeouts
  and Retries for Latency-Sensitive Applications": "When you make smaller requests (for
  example, less than 512 KB), where median latencies are often in the tens of milliseconds
  range, a good guideline is to retry a GET or PUT operation after 2 seconds."
  https://docs.aws.amazon.com/whitepapers/latest/s3-optimizing-performance-best-practices/timeouts-and-retries-for-latency-sensitive-applications.html
- AWS, "Optimizing S3 Express One Zone performance": S3 Express One Zone delivers "consistent
  single-digit millisecond first-byte read and write request latencies—up to 10x faster than
  S3 Standard".
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/s3-express-performance.html
- D. Durner, V. Leis, T. Neumann, "Exploiting Cloud Object Storage for High-Performance
  Analytics", PVLDB 16(11), 2023 (https://www.vldb.org/pvldb/vol16/p2769-durner.pdf), as
  summarised by Greptime (https://www.greptime.com/blogs/2024-01-31-paper-sharing): for small
  requests the first-byte latency dominates; the bandwidth of a single request varies from
  about 25 to 95 MiB/s with a stable median of 55-60 MiB/s; fewer than 5% of requests wait
  more than 200 ms for the first byte.
- Quickwit, "S3 Express speculations" (2023, https://quickwit.io/blog/s3-express-speculations):
  "Every time you emit a GET request, you can typically wait around up to 30ms to get your
  first byte of data, with much higher tail latencies (80ms is rather common). The throughput
  is then of about 80MB/s."
- turbopuffer, "Tradeoffs" (https://turbopuffer.com/docs/tradeoffs): "S3's metadata p50=10ms
  p90=17ms" (their conditional GET / metadata requests). Their "Architecture" page gives a write
  to their log on S3 (~500 KB, including their own batching) as "p50=285 ms".
- WarpStream, "WarpStream S3 Express One Zone Benchmark and Total Cost of Ownership" (2025,
  https://warpstream.com/blog/warpstream-s3-express-one-zone-benchmark-and-total-cost-of-ownership):
  with S3 Express One Zone, a produce (which waits for a PUT) reached "a P99 Produce latency of
  169ms and a median Produce latency of just 105ms", "roughly 3x lower" than with S3 Standard.
  Their own batching dominates those numbers, so they set no parameter here; they are context:
  end to end, Express One Zone gained 3x, not the 10x of its first-byte latency.

From these, as (median, p99): S3 Standard GET 25/100 ms (Quickwit's 30 ms and 80 ms, AWS's
"tens of milliseconds", Durner's <5% above 200 ms), HEAD 10/40 ms (turbopuffer's metadata
latency, with a longer tail than their p90 implies), LIST 30/120 ms, DELETE 30/120 ms, PUT and
POST (multipart, multi-delete) 50/200 ms, 60 MB/s per connection (Durner's median). No source
above gives percentiles of a single small PUT to S3 Standard; "twice a GET" is a judgement
within AWS's "tens of milliseconds" and below turbopuffer's batched write. S3 Express One Zone:
GET 4/12 ms, HEAD 3/9 ms, PUT and POST 7/21 ms, LIST and DELETE 5/15 ms: single-digit medians
as AWS states, p99 at 3x the median (4x for Standard), for AWS's "consistent". Its
per-connection throughput is not published, so Standard's 60 MB/s is kept.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import multiprocessing
import random
import socket
import sys
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

# Operation classes. POST also covers every method that is not GET, HEAD, PUT or DELETE.
OPS = ("GET", "HEAD", "PUT", "LIST", "DELETE", "POST")
# Counters kept per operation class. "failed": a request the proxy received whose response did
# not reach the client in full (moto unreachable, or the client went away). Status counters
# count moto's responses; 304/404/409/412 are also counted on their own.
FIELDS = ("requests", "failed", "bytes_up", "bytes_down", "delay_us",
          "2xx", "3xx", "4xx", "5xx", "304", "404", "409", "412")
_STATUS_COUNTED = frozenset(("304", "404", "409", "412"))
_LIST_PARAMS = frozenset(("list-type", "prefix", "delimiter", "uploads", "versions"))

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 5.0
UPSTREAM_TIMEOUT_S = 120.0
CLIENT_IDLE_TIMEOUT_S = 600.0
HEAD_BYTES_MAX = 1 << 20  # a request or response head larger than this is refused
BODY_BYTES_MAX = 1 << 30  # a request or response body larger than this is refused
LISTEN_BACKLOG = 1024
_Z_P99 = 2.3263478740408408  # the 99th percentile of the standard normal distribution

# Hop-by-hop headers (RFC 9110 7.6.1) belong to one connection and are never forwarded;
# Content-Length is rewritten because bodies are forwarded de-chunked.
_HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                         "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
                         "expect", "content-length"))


# ---- the latency model ----------------------------------------------------------------------
@dataclass(frozen=True)
class LatencyModel:
    """Added latency per request: a lognormal time to first byte per operation class, plus the
    request and response body bytes at `throughput_mb_s` (1 MB = 10**6 bytes).

    Invariant: `first_byte_ms` is empty (the model adds nothing) or maps every class in OPS to
    (median_ms, p99_ms) with 0 < median_ms <= p99_ms."""
    name: str
    first_byte_ms: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    throughput_mb_s: float = math.inf

    def __post_init__(self):
        assert self.throughput_mb_s > 0, self
        if self.first_byte_ms:
            assert set(self.first_byte_ms) == set(OPS), self
            assert all(0 < m <= p for m, p in self.first_byte_ms.values()), self

    def delay_s(self, op: str, nbytes: int, rng: random.Random) -> float:
        """One sample of the added latency of an `op` request moving `nbytes` body bytes."""
        if not self.first_byte_ms:
            return 0.0
        median_ms, p99_ms = self.first_byte_ms[op]
        sigma = math.log(p99_ms / median_ms) / _Z_P99
        first_byte_s = median_ms * math.exp(sigma * rng.gauss(0.0, 1.0)) / 1e3
        return first_byte_s + nbytes / (self.throughput_mb_s * 1e6)


NONE = LatencyModel("none")
S3_STANDARD = LatencyModel("s3-standard", {
    "GET": (25.0, 100.0), "HEAD": (10.0, 40.0), "PUT": (50.0, 200.0),
    "LIST": (30.0, 120.0), "DELETE": (30.0, 120.0), "POST": (50.0, 200.0)}, throughput_mb_s=60.0)
S3_EXPRESS = LatencyModel("s3-express", {
    "GET": (4.0, 12.0), "HEAD": (3.0, 9.0), "PUT": (7.0, 21.0),
    "LIST": (5.0, 15.0), "DELETE": (5.0, 15.0), "POST": (7.0, 21.0)}, throughput_mb_s=60.0)
MODELS = {m.name: m for m in (NONE, S3_STANDARD, S3_EXPRESS)}


def classify(method: str, target: str) -> str:
    """The operation class of a path-style S3 request; `target` is the path and query.
    A GET is a LIST when it names no object key or carries a listing parameter."""
    if method in ("HEAD", "PUT", "DELETE"):
        return method
    if method != "GET":
        return "POST"
    path, _, query = target.partition("?")
    params = urllib.parse.parse_qs(query, keep_blank_values=True)
    key = path.lstrip("/").partition("/")[2]
    return "LIST" if not key or params.keys() & _LIST_PARAMS else "GET"


# ---- child processes ------------------------------------------------------------------------
def _log(message: str) -> None:
    print(f"latency: {message}", file=sys.stderr, flush=True)


def _child_entry(main, conn, *args) -> None:
    """Run main(conn, *args) in the child; report a failure to the parent through `conn`."""
    try:
        main(conn, *args)
    except Exception as exc:
        _log(f"{main.__name__} failed: {exc!r}")
        with contextlib.suppress(OSError):
            conn.send(("error", repr(exc)))
        sys.exit(1)


def _wait_ready(conn, proc) -> int:
    """The port the child reports once it serves; raises if it fails or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not conn.poll(0.05):
        if not proc.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} did not start (exit code {proc.exitcode})")
    kind, value = conn.recv()
    if kind != "ready":
        raise RuntimeError(f"{proc.name} failed to start: {value}")
    return value


def _stop(proc) -> None:
    """Wait for a clean exit, then terminate, then kill."""
    proc.join(STOP_TIMEOUT_S)
    for escalate in (proc.terminate, proc.kill):
        if not proc.is_alive():
            return
        _log(f"{proc.name} (pid {proc.pid}) still running: {escalate.__name__}")
        escalate()
        proc.join(STOP_TIMEOUT_S)


@contextlib.contextmanager
def _child_process(name: str, main, *args):
    """Run main(conn, *args) in a spawned daemon process; yield (port it reports, process).
    Closing the pipe on exit is the child's signal to stop."""
    ctx = multiprocessing.get_context("spawn")
    conn, child_conn = ctx.Pipe()
    proc = ctx.Process(target=_child_entry, args=(main, child_conn, *args), name=name, daemon=True)
    proc.start()
    child_conn.close()
    try:
        yield _wait_ready(conn, proc), proc
    finally:
        conn.close()
        _stop(proc)


# ---- moto -------------------------------------------------------------------------------------
def _moto_main(conn, buckets: tuple[str, ...]) -> None:
    """Serve moto's S3 on 127.0.0.1 with `buckets` created until the control pipe closes."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        for bucket in buckets:
            client.create_bucket(Bucket=bucket)
        conn.send(("ready", port))
        with contextlib.suppress(EOFError):
            conn.recv()  # blocks until the parent closes its end
    finally:
        server.stop()


@contextlib.contextmanager
def moto_process(buckets: tuple[str, ...] = ("flussfs-bench",)):
    """moto's S3 server in its own process on 127.0.0.1 with `buckets` created; yields its
    endpoint URL "http://127.0.0.1:PORT" and stops the process on exit."""
    with _child_process("flussfs-moto", _moto_main, tuple(buckets)) as (port, _proc):
        yield f"http://127.0.0.1:{port}"


# ---- proxy counters -----------------------------------------------------------------------------
class _Counters:
    """FIELDS per class in OPS, in a shared int64 array: the proxy writes, the parent reads and
    resets at any time; both under the array's lock, so nobody sees half a request."""

    def __init__(self, array):
        assert len(array) == len(OPS) * len(FIELDS), len(array)
        self._array = array

    def record(self, op: str, status: int | None = None, **deltas: int) -> None:
        row = OPS.index(op) * len(FIELDS)
        names = list(deltas.items())
        if status is not None and 200 <= status < 600:
            names += [(f"{status // 100}xx", 1)]
            names += [(str(status), 1)] if str(status) in _STATUS_COUNTED else []
        raw = self._array.get_obj()
        with self._array.get_lock():
            for name, delta in names:
                raw[row + FIELDS.index(name)] += delta

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._array.get_lock():
            values = self._array.get_obj()[:]
        return {op: dict(zip(FIELDS, values[i * len(FIELDS):(i + 1) * len(FIELDS)]))
                for i, op in enumerate(OPS)}

    def reset(self) -> None:
        with self._array.get_lock():
            self._array.get_obj()[:] = [0] * len(self._array)


@dataclass(frozen=True)
class Proxy:
    """A running latency proxy: use `url` as the S3 endpoint."""
    url: str
    pid: int
    _counters: _Counters

    def stats(self) -> dict[str, dict[str, int]]:
        """{op: {field: count}} for every op in OPS and field in FIELDS; delay_us is the sum of
        the modelled delays, bytes are body bytes."""
        return self._counters.snapshot()

    def reset(self) -> None:
        """Zero every counter."""
        self._counters.reset()


@contextlib.contextmanager
def latency_proxy(upstream_url: str, model: LatencyModel, seed: int = 0):
    """An HTTP/1.1 forwarding proxy to `upstream_url` (http on 127.0.0.1) in its own process,
    adding `model`'s latency (sampled from random.Random(seed)) to every response; yields a
    Proxy and stops the process on exit."""
    target = urllib.parse.urlsplit(upstream_url)
    if target.scheme != "http" or target.hostname not in ("127.0.0.1", "localhost"):
        raise ValueError(f"only forwards to http on the loopback interface, not {upstream_url!r}")
    array = multiprocessing.get_context("spawn").Array("q", len(OPS) * len(FIELDS))
    upstream = (target.hostname, target.port or 80)
    with _child_process("flussfs-latency-proxy", _proxy_main, upstream, model, seed, array) \
            as (port, proc):
        yield Proxy(f"http://127.0.0.1:{port}", proc.pid, _Counters(array))


# ---- proxy: HTTP/1.1 messages -------------------------------------------------------------------
class _BadMessage(Exception):
    """A malformed or oversized message; `status` is what the client is told."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


class _ClosedBeforeResponse(ConnectionError):
    """The upstream closed a connection without sending a byte of a response."""


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    """The last value of header `name` (case-insensitive), or None."""
    values = [v for k, v in headers if k.lower() == name]
    return values[-1] if values else None


def _tokens(value: str | None) -> set[str]:
    return {t.strip().lower() for t in (value or "").split(",") if t.strip()}


_Head = tuple[list[str], list[tuple[str, str]]]  # (start line split in 3, headers)


async def _read_head(reader: asyncio.StreamReader) -> _Head | None:
    """The head of the next message, or None at a clean end of file."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise
        return None
    except asyncio.LimitOverrunError:
        raise _BadMessage(431, "head too large") from None
    start, *lines = raw[:-4].decode("latin-1").split("\r\n")
    parts = start.split(" ", 2)
    if len(parts) < 2:
        raise _BadMessage(400, f"bad start line {start!r}")
    headers = []
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _BadMessage(400, f"bad header line {line!r}")
        headers.append((name, value.strip()))
    return parts, headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A chunked body, de-chunked; trailers are read and dropped."""
    parts, total = [], 0
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _BadMessage(400, f"bad chunk size {line[:40]!r}") from None
        if size == 0:
            break
        total += size
        if total > BODY_BYTES_MAX:
            raise _BadMessage(413, "body too large")
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise _BadMessage(400, "chunk not followed by CRLF")
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass
    return b"".join(parts)


async def _read_body(reader: asyncio.StreamReader, headers, *, until_eof: bool) -> bytes:
    """A body delimited by chunking, Content-Length, or (if `until_eof`) the end of file."""
    if "chunked" in _tokens(_header(headers, "transfer-encoding")):
        return await _read_chunked(reader)
    length = _header(headers, "content-length")
    if length is None:
        return await reader.read() if until_eof else b""
    if not length.isdigit() or int(length) > BODY_BYTES_MAX:
        raise _BadMessage(413 if length.isdigit() else 400, f"content-length {length!r}")
    return await reader.readexactly(int(length))


def _encode(start: str, headers, body: bytes, *, set_length: bool, close: bool) -> bytes:
    """A message with hop-by-hop headers removed; Content-Length set to len(body) if
    `set_length`, otherwise kept as it came (HEAD, 204, 304 answers)."""
    hop = _HOP_BY_HOP | _tokens(_header(headers, "connection"))
    kept = [(k, v) for k, v in headers
            if k.lower() not in hop or (k.lower() == "content-length" and not set_length)]
    kept += [("Content-Length", str(len(body)))] if set_length else []
    kept += [("Connection", "close")] if close else []
    head = "".join(f"{k}: {v}\r\n" for k, v in kept)
    return f"{start}\r\n{head}\r\n".encode("latin-1") + body


# ---- proxy: one upstream connection ------------------------------------------------------------
@dataclass
class _Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class _Upstream:
    """At most one connection to moto for one client connection, reopened after moto closes it
    (moto answers every request with `Connection: close`)."""

    def __init__(self, address: tuple[str, int]):
        self.address = address
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def exchange(self, request: bytes, method: str) -> _Response:
        """Send `request`, return the final response. A reused connection that closes before
        answering is moto having closed it while idle: that is retried once on a fresh one."""
        async with asyncio.timeout(UPSTREAM_TIMEOUT_S):
            reused = self.writer is not None
            try:
                return await self._attempt(request, method)
            except (_ClosedBeforeResponse, ConnectionResetError, BrokenPipeError):
                if not reused:
                    raise
            return await self._attempt(request, method)

    async def _attempt(self, request: bytes, method: str) -> _Response:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(*self.address,
                                                                     limit=HEAD_BYTES_MAX)
            _nodelay(self.writer)
        try:
            self.writer.write(request)
            await self.writer.drain()
            return await self._read_response(method)
        except BaseException:
            self.close()
            raise

    async def _read_response(self, method: str) -> _Response:
        while True:
            head = await _read_head(self.reader)
            if head is None:
                raise _ClosedBeforeResponse("upstream closed before responding")
            (version, code, *reason), headers = head
            status = int(code)
            if not 100 <= status < 200:
                break  # 1xx are interim responses; the proxy sent no Expect upstream
        no_body = method == "HEAD" or status in (204, 304)
        close_delimited = not no_body and _header(headers, "content-length") is None \
            and "chunked" not in _tokens(_header(headers, "transfer-encoding"))
        body = b"" if no_body else await _read_body(self.reader, headers, until_eof=True)
        closing = "close" in _tokens(_header(headers, "connection"))
        if close_delimited or closing or version != "HTTP/1.1":
            self.close()
        return _Response(status, reason[0] if reason else "", headers, body)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _nodelay(writer: asyncio.StreamWriter) -> None:
    """Small requests must not wait for Nagle's algorithm (it adds ~40 ms per request)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# ---- proxy: serving clients -------------------------------------------------------------------
@dataclass
class _ProxyState:
    upstream: tuple[str, int]
    model: LatencyModel
    rng: random.Random
    counters: _Counters


async def _handle_request(reader, writer, upstream: _Upstream, state: _ProxyState) -> bool:
    """Serve one request of a client connection; False when the connection is to be closed."""
    async with asyncio.timeout(CLIENT_IDLE_TIMEOUT_S):
        head = await _read_head(reader)
        if head is None:
            return False
        (method, target, *version), headers = head
        if "100-continue" in _tokens(_header(headers, "expect")):
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        body = await _read_body(reader, headers, until_eof=False)
    keep_alive = version == ["HTTP/1.1"] and "close" not in _tokens(_header(headers, "connection"))
    received = asyncio.get_running_loop().time()
    op = classify(method, target)
    has_body = body or _header(headers, "content-length") or _header(headers, "transfer-encoding")
    request = _encode(f"{method} {target} HTTP/1.1", headers, body,
                      set_length=bool(has_body), close=False)
    try:
        response = await upstream.exchange(request, method)
    except (OSError, asyncio.IncompleteReadError, TimeoutError, _BadMessage, ValueError) as exc:
        state.counters.record(op, requests=1, failed=1, bytes_up=len(body))
        _log(f"{method} {target}: upstream failed: {exc!r}")
        await _reply_error(writer, 502, "upstream failed")
        return False
    delay_s = state.model.delay_s(op, len(body) + len(response.body), state.rng)
    state.counters.record(op, response.status, requests=1, bytes_up=len(body),
                          bytes_down=len(response.body), delay_us=round(delay_s * 1e6))
    wait_s = delay_s - (asyncio.get_running_loop().time() - received)
    if wait_s > 0:
        await asyncio.sleep(wait_s)
    no_body = method == "HEAD" or response.status in (204, 304)
    try:
        writer.write(_encode(f"HTTP/1.1 {response.status} {response.reason}", response.headers,
                             response.body, set_length=not no_body, close=not keep_alive))
        await writer.drain()
    except ConnectionError:
        state.counters.record(op, failed=1)
        raise
    return keep_alive


async def _reply_error(writer, status: int, reason: str) -> None:
    with contextlib.suppress(ConnectionError):
        writer.write(_encode(f"HTTP/1.1 {status} {reason}", [("Content-Type", "text/plain")],
                             reason.encode(), set_length=True, close=True))
        await writer.drain()


async def _serve_client(reader, writer, state: _ProxyState) -> None:
    """Serve a client connection's requests one after another until it closes."""
    _nodelay(writer)
    upstream = _Upstream(state.upstream)
    try:
        while await _handle_request(reader, writer, upstream, state):
            pass
    except _BadMessage as exc:
        _log(f"bad request from {writer.get_extra_info('peername')}: {exc}")
        await _reply_error(writer, exc.status, str(exc))
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        _log(f"client {writer.get_extra_info('peername')} went away mid-request: {exc!r}")
    except TimeoutError:
        pass  # an idle client connection
    except asyncio.CancelledError:
        # Only a stopping proxy cancels handlers. Ending normally keeps Python 3.11's stream
        # callback from printing a traceback for every cancelled connection.
        pass
    finally:
        upstream.close()
        writer.close()


async def _proxy_serve(conn, upstream: tuple[str, int], model: LatencyModel, seed: int,
                       array) -> None:
    state = _ProxyState(upstream, model, random.Random(seed), _Counters(array))
    server = await asyncio.start_server(functools.partial(_serve_client, state=state),
                                        "127.0.0.1", 0, limit=HEAD_BYTES_MAX,
                                        backlog=LISTEN_BACKLOG)
    conn.send(("ready", server.sockets[0].getsockname()[1]))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_reader(conn.fileno(), stop.set)  # readable at end of file
    await stop.wait()
    server.close()


def _proxy_main(conn, upstream, model, seed, array) -> None:
    """Serve the proxy until the control pipe closes; open client connections are dropped."""
    asyncio.run(_proxy_serve(conn, upstream, model, seed, array))
