"""The benchmark latency proxy (benchmarks/latency.py) forwards boto3, s3fs and pyarrow traffic to
moto in its own process faithfully, counts every request by S3 operation class and status, and
leaves no process behind. No assertion here depends on timing."""
import multiprocessing
import os
import random
import socket
import statistics
import sys
import urllib.parse
from pathlib import Path

import pytest

from conftest import REGION, boto3_client, s3_storage_options

# benchmarks/ is a top-level package next to tests/; the spawned children inherit sys.path.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks.latency import (FIELDS, NONE, OPS, S3_EXPRESS, S3_STANDARD, classify,  # noqa: E402
                                latency_proxy, moto_process)

BUCKET = "flussfs-bench"


@pytest.fixture(scope="module")
def moto_url():
    with moto_process((BUCKET,)) as url:
        yield url


@pytest.fixture(scope="module")
def module_proxy(moto_url):
    with latency_proxy(moto_url, NONE) as proxy:
        yield proxy


@pytest.fixture
def proxy(module_proxy):
    """The module's NONE-model proxy with zeroed counters."""
    module_proxy.reset()
    return module_proxy


def _nonzero(stats: dict) -> dict:
    return {op: {k: v for k, v in row.items() if v}
            for op, row in stats.items() if any(row.values())}


# moto checks that a request is signed, not the signature.
_AUTH = (b"Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, "
         b"SignedHeaders=host, Signature=0\r\n")


def _connect(url: str) -> socket.socket:
    parts = urllib.parse.urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def _read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """(head, body) of one Content-Length-delimited response on `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


def test_model_samples_have_the_configured_median_and_p99():
    """delay_s draws a lognormal first-byte time with the configured median and p99 per
    class, adds body bytes at the model's throughput, and NONE adds nothing."""
    for model in (S3_STANDARD, S3_EXPRESS):
        for op in OPS:
            rng = random.Random(7)
            samples = sorted(model.delay_s(op, 0, rng) * 1e3 for _ in range(20_000))
            median_ms, p99_ms = model.first_byte_ms[op]
            assert statistics.median(samples) == pytest.approx(median_ms, rel=0.05)
            assert samples[int(0.99 * len(samples))] == pytest.approx(p99_ms, rel=0.15)
        transfer_s = (model.delay_s("GET", 6 * 10**6, random.Random(1))
                      - model.delay_s("GET", 0, random.Random(1)))
        assert transfer_s == pytest.approx(6 / model.throughput_mb_s)
    assert NONE.delay_s("PUT", 10**9, random.Random(0)) == 0.0


@pytest.mark.parametrize("method, target, op", [
    ("GET", "/b/k", "GET"), ("GET", "/b/dir/k?partNumber=1", "GET"),
    ("GET", "/b?list-type=2&prefix=a", "LIST"), ("GET", "/b/", "LIST"), ("GET", "/", "LIST"),
    ("GET", "/b?delimiter=%2F", "LIST"), ("HEAD", "/b/k", "HEAD"), ("PUT", "/b/k", "PUT"),
    ("DELETE", "/b/k", "DELETE"), ("POST", "/b?delete", "POST"), ("POST", "/b/k?uploads", "POST"),
    ("OPTIONS", "/b/k", "POST"),
])
def test_classify(method, target, op):
    """S3 requests fall into the documented operation classes."""
    assert classify(method, target) == op


def test_boto3_operations_are_counted_exactly(proxy):
    """Every boto3 call through the proxy works and shows up once in stats(), with 404 and
    412 counted apart; reset() zeroes every counter."""
    s3 = boto3_client(proxy.url)
    for i in range(3):
        s3.put_object(Bucket=BUCKET, Key=f"boto/{i}", Body=b"x" * 100)
    assert s3.get_object(Bucket=BUCKET, Key="boto/0")["Body"].read() == b"x" * 100
    ranged = s3.get_object(Bucket=BUCKET, Key="boto/1", Range="bytes=10-19")
    assert ranged["Body"].read() == b"x" * 10
    assert s3.head_object(Bucket=BUCKET, Key="boto/2")["ContentLength"] == 100
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="boto/")["Contents"]
    assert [o["Key"] for o in listed] == ["boto/0", "boto/1", "boto/2"]
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=BUCKET, Key="boto/missing")
    s3.put_object(Bucket=BUCKET, Key="boto/cond", Body=b"first", IfNoneMatch="*")
    with pytest.raises(s3.exceptions.ClientError) as lost:
        s3.put_object(Bucket=BUCKET, Key="boto/cond", Body=b"second", IfNoneMatch="*")
    assert lost.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert lost.value.response["Error"]["Code"] == "PreconditionFailed"
    s3.delete_object(Bucket=BUCKET, Key="boto/0")

    stats = proxy.stats()
    assert {op: row["requests"] for op, row in stats.items()} == {
        "GET": 3, "HEAD": 1, "PUT": 5, "LIST": 1, "DELETE": 1, "POST": 0}
    assert (stats["GET"]["2xx"], stats["GET"]["4xx"], stats["GET"]["404"]) == (2, 1, 1)
    assert (stats["PUT"]["2xx"], stats["PUT"]["4xx"], stats["PUT"]["412"]) == (4, 1, 1)
    assert stats["DELETE"]["2xx"] == 1 and stats["HEAD"]["2xx"] == 1
    assert stats["PUT"]["bytes_up"] == 3 * 100 + len(b"first") + len(b"second")
    assert stats["GET"]["bytes_down"] >= 110  # two bodies and the 404's error document
    assert all(row["failed"] == 0 and row["delay_us"] == 0 for row in stats.values())
    proxy.reset()
    assert all(v == 0 for row in proxy.stats().values() for v in row.values())
    assert set(proxy.stats()["GET"]) == set(FIELDS)


def test_large_put_and_get(proxy):
    """An 8 MiB object goes up and comes back intact, and its bytes are counted both ways."""
    s3 = boto3_client(proxy.url)
    data = os.urandom(8 * 2**20)
    s3.put_object(Bucket=BUCKET, Key="big/8mib", Body=data)
    assert s3.get_object(Bucket=BUCKET, Key="big/8mib")["Body"].read() == data
    stats = proxy.stats()
    assert stats["PUT"]["bytes_up"] == len(data) and stats["GET"]["bytes_down"] == len(data)


def test_s3fs_put_cat_ls(proxy):
    """s3fs (aiohttp under aiobotocore) writes, reads and lists through the proxy."""
    import s3fs

    fs = s3fs.S3FileSystem(**s3_storage_options(proxy.url), skip_instance_cache=True)
    fs.pipe_file(f"{BUCKET}/fsspec/a", b"abc" * 1000)
    assert fs.cat_file(f"{BUCKET}/fsspec/a") == b"abc" * 1000
    assert fs.ls(f"{BUCKET}/fsspec", detail=False, refresh=True) == [f"{BUCKET}/fsspec/a"]
    stats = proxy.stats()
    assert stats["PUT"]["requests"] == 1 and stats["PUT"]["2xx"] == 1
    assert stats["GET"]["2xx"] >= 1 and stats["LIST"]["2xx"] >= 1


def test_pyarrow_writes_and_reads(proxy):
    """pyarrow's S3FileSystem (the AWS C++ SDK) writes and reads a file through the proxy."""
    import pyarrow.fs

    fs = pyarrow.fs.S3FileSystem(endpoint_override=proxy.url.removeprefix("http://"), scheme="http",
                                 access_key="testing", secret_key="testing", region=REGION)
    data = os.urandom(300_000)
    with fs.open_output_stream(f"{BUCKET}/arrow/f.bin") as out:
        out.write(data)
    with fs.open_input_file(f"{BUCKET}/arrow/f.bin") as f:
        assert f.read() == data
    stats = proxy.stats()
    assert stats["GET"]["bytes_down"] >= len(data)
    assert sum(row["failed"] + row["5xx"] for row in stats.values()) == 0


def test_expect_continue_chunked_body_and_keep_alive(proxy):
    """On one raw connection: a PUT with `Expect: 100-continue` and a chunked body gets
    "100 Continue" from the proxy, then 200; a GET on the same connection reads it back."""
    with _connect(proxy.url) as sock:
        sock.sendall(b"PUT /flussfs-bench/raw/chunked HTTP/1.1\r\nHost: x\r\n" + _AUTH +
                     b"Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert sock.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
        head, _ = _read_response(sock)
        assert head.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /flussfs-bench/raw/chunked HTTP/1.1\r\nHost: x\r\n" + _AUTH + b"\r\n")
        head, body = _read_response(sock)
        assert head.startswith(b"HTTP/1.1 200") and body == b"hello world"
    assert proxy.stats()["PUT"]["bytes_up"] == 11


def test_client_closing_mid_request_leaves_the_proxy_serving(proxy):
    """A client that sends half a body and disconnects costs only its own connection."""
    with _connect(proxy.url) as sock:
        sock.sendall(b"PUT /flussfs-bench/raw/half HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 100\r\n\r\n0123456789")
    s3 = boto3_client(proxy.url)
    s3.put_object(Bucket=BUCKET, Key="raw/whole", Body=b"ok")
    assert s3.get_object(Bucket=BUCKET, Key="raw/whole")["Body"].read() == b"ok"
    assert proxy.stats()["PUT"]["requests"] == 1  # the half request never reached moto


def test_modelled_delay_is_applied_and_recorded(moto_url):
    """With S3_EXPRESS the sleep path runs, every request still succeeds, and the modelled
    delay of each request is added to delay_us."""
    with latency_proxy(moto_url, S3_EXPRESS, seed=3) as proxy:
        s3 = boto3_client(proxy.url)
        s3.put_object(Bucket=BUCKET, Key="express/a", Body=b"abc")
        assert s3.get_object(Bucket=BUCKET, Key="express/a")["Body"].read() == b"abc"
        s3.list_objects_v2(Bucket=BUCKET, Prefix="express/")
        stats = _nonzero(proxy.stats())
    assert set(stats) == {"PUT", "GET", "LIST"}
    assert all(row["requests"] == 1 and row["delay_us"] > 0 for row in stats.values())


def test_processes_are_gone_after_the_context_even_on_error():
    """Leaving the contexts, by an exception here, stops the moto and proxy processes and
    frees their ports."""
    before = set(multiprocessing.active_children())
    with pytest.raises(RuntimeError, match="boom"):
        with moto_process(("other",)) as url, latency_proxy(url, NONE) as proxy:
            children = set(multiprocessing.active_children()) - before
            assert {c.name for c in children} == {"flussfs-moto", "flussfs-latency-proxy"}
            assert {c.pid for c in children} >= {proxy.pid}
            boto3_client(proxy.url).put_object(Bucket="other", Key="k", Body=b"v")
            raise RuntimeError("boom")
    assert not any(c.is_alive() for c in children)
    assert all(c.exitcode is not None for c in children)
    for endpoint in (url, proxy.url):
        with pytest.raises(ConnectionRefusedError):
            _connect(endpoint).close()
