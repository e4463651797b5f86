"""The lossy proxy forwards S3 traffic faithfully, and a lost PUT response turns our own successful
put-if-absent into "already exists": the trap every commit protocol on S3 must survive."""
import os
import socket

import pytest

from flussfs.errors import CommitOutcomeUnknownError
from flussfs.storage import PutOutcome
from flussfs.storage.s3 import S3Store
from lossy_proxy import LossyProxy


@pytest.fixture
def proxied(lossy_s3_options, s3_uri):
    """An S3Store on a fresh prefix, reaching moto through the lossy proxy (5 MiB multipart parts)."""
    return S3Store(s3_uri, lossy_s3_options, part_bytes=5 * 2**20)


def test_proxy_forwards_every_operation(proxied, lossy_proxy):
    """Without armed drops every Store operation works through the proxy, multipart uploads included."""
    big = os.urandom(11 * 2**20)
    assert proxied.put_if_absent("f/big", big) is PutOutcome.CREATED
    assert proxied.put_if_absent("f/small", b"abc") is PutOutcome.CREATED
    assert proxied.put_if_absent("f/small", b"xyz") is PutOutcome.EXISTS
    proxied.put("f/hint", b"h")
    assert proxied.get("f/big") == big
    assert proxied.get_ranges("f/big", [(7, 9), (2**20, 2**20 + 3)]) == [big[7:9], big[2**20:2**20 + 3]]
    assert proxied.head("f/big").size == len(big)
    assert [i.key for i in proxied.list("f/")] == ["f/big", "f/hint", "f/small"]
    proxied.delete("f/hint")
    assert proxied.head("f/hint") is None
    assert lossy_proxy.dropped == 0
    assert {x.method for x in lossy_proxy.exchanges()} >= {"PUT", "POST", "GET", "HEAD", "DELETE"}


def test_lost_put_response_comes_back_as_exists(proxied, lossy_proxy):
    """A put_if_absent whose PUT landed but whose response was lost is retried underneath us and reports EXISTS (or unknown), although the object holds our bytes."""
    lossy_proxy.drop_next("PUT", "/c/00000000000000000001.commit", count=1)
    try:
        outcome = proxied.put_if_absent("c/00000000000000000001.commit", b"writer-A")
    except CommitOutcomeUnknownError:
        outcome = "unknown"
    assert outcome in (PutOutcome.EXISTS, "unknown")  # never CREATED, though we did create it
    assert proxied.get("c/00000000000000000001.commit") == b"writer-A"
    assert lossy_proxy.dropped == 1 and lossy_proxy.pending_drops() == 0
    puts = lossy_proxy.exchanges("PUT", "/c/")
    assert [(x.status, x.dropped, x.headers.get("if-none-match")) for x in puts][:2] == \
        [(200, True, "*"), (412, False, "*")]


def test_lost_get_response_is_retried_harmlessly(proxied, lossy_proxy):
    """A lost GET response is retried by botocore and the read returns the right bytes."""
    proxied.put("g", b"payload")
    lossy_proxy.drop_next("GET", "/g", count=2)
    assert proxied.get("g", 1, 4) == b"ayl"
    assert lossy_proxy.dropped == 2
    assert [x.dropped for x in lossy_proxy.exchanges("GET", "/g")] == [True, True, False]


def test_lost_complete_multipart_response_leaves_our_object(proxied, lossy_proxy, s3_client, s3_uri):
    """Losing the CompleteMultipartUpload response never leaves a pending upload or someone else's bytes."""
    big = os.urandom(11 * 2**20)
    lossy_proxy.drop_next("POST", "uploadId=", count=1)
    try:
        proxied.put_if_absent("m/big", big)  # moto answers a repeated complete with 200: CREATED
    except CommitOutcomeUnknownError:
        pass
    assert lossy_proxy.dropped == 1
    assert proxied.get("m/big") == big
    bucket, prefix = s3_uri.split("://", 1)[1].split("/", 1)
    assert s3_client.list_multipart_uploads(Bucket=bucket, Prefix=prefix + "/").get("Uploads", []) == []


def test_drop_rules_match_method_and_path(proxied, lossy_proxy):
    """An armed drop fires only on its method and path substring, and only `count` times."""
    lossy_proxy.drop_next("PUT", "/only-this-key", count=1)
    assert proxied.put_if_absent("other-key", b"x") is PutOutcome.CREATED
    assert proxied.get("other-key") == b"x"
    assert (lossy_proxy.dropped, lossy_proxy.pending_drops()) == (0, 1)


def test_proxy_only_forwards_to_loopback_and_stops_cleanly(s3_endpoint):
    """The proxy refuses a non-loopback target, and after stop() its port no longer accepts connections."""
    with pytest.raises(ValueError):
        LossyProxy("http://example.com:80")
    with pytest.raises(ValueError):
        LossyProxy("https://127.0.0.1:443")
    with LossyProxy(s3_endpoint) as proxy:
        host, port = proxy.endpoint.rsplit("/", 1)[1].split(":")
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=5).close()
