"""Shared fixtures: test AWS credentials, moto's S3 server on 127.0.0.1, and one fresh store per kind.

Invariants: no test reaches a real cloud endpoint (credentials are fake and set before boto3 or
s3fs are imported; the metadata service is disabled); every S3 test works under its own fresh
prefix of one session-wide bucket, so tests never see each other's keys.
"""
import io
import json
import os
import urllib.request
import zipfile

# Test credentials only, set at import time so that boto3, s3fs and anything they spawn see them.
for _var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
             "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
    os.environ.pop(_var, None)
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

import uuid

import pytest

BUCKET = "flussfs-test"
REGION = "us-east-1"


def s3_storage_options(endpoint: str) -> dict:
    """The s3fs keyword dict that points at `endpoint` with the test credentials."""
    return {"endpoint_url": endpoint, "key": "testing", "secret": "testing",
            "client_kwargs": {"region_name": REGION}}


def boto3_client(endpoint: str):
    """A plain boto3 S3 client on `endpoint`, for checks below the Store protocol."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on 127.0.0.1 (a free port) with bucket BUCKET created; stopped at session end."""
    from moto.server import ThreadedMotoServer

    # Port 0 lets the kernel pick a free port at bind time, so no other process can take it first.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3_client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_client(s3_endpoint):
    """A boto3 S3 client on moto, for checks below the Store protocol (e.g. pending multipart uploads)."""
    return boto3_client(s3_endpoint)


@pytest.fixture
def s3_options(s3_endpoint):
    """s3fs storage_options for the moto endpoint."""
    return s3_storage_options(s3_endpoint)


@pytest.fixture
def s3_uri(s3_endpoint):
    """A fresh, empty s3://BUCKET/<uuid> prefix for this test."""
    return f"s3://{BUCKET}/{uuid.uuid4().hex}"


@pytest.fixture
def lossy_proxy(s3_endpoint):
    """A LossyProxy (tests/lossy_proxy.py) in front of moto; use `.endpoint` as s3fs endpoint_url."""
    from lossy_proxy import LossyProxy

    with LossyProxy(s3_endpoint) as proxy:
        yield proxy


@pytest.fixture
def lossy_s3_options(lossy_proxy):
    """s3fs storage_options that reach moto through `lossy_proxy`."""
    return s3_storage_options(lossy_proxy.endpoint)


@pytest.fixture(params=["memory", "local", "s3"])
def store(request, tmp_path):
    """A fresh, empty Store of each kind, opened with open_store."""
    from flussfs.storage import open_store

    if request.param == "memory":
        yield open_store(f"memory://{uuid.uuid4().hex}")
    elif request.param == "local":
        yield open_store(str(tmp_path / "store"))
    else:
        yield open_store(request.getfixturevalue("s3_uri"), request.getfixturevalue("s3_options"))


@pytest.fixture(params=["local", "s3"])
def table_uri(request, tmp_path):
    """(uri, storage_options) of a not yet existing table: a local path, or a fresh S3 prefix on moto."""
    if request.param == "local":
        yield str(tmp_path / "table"), None
    else:
        yield request.getfixturevalue("s3_uri"), request.getfixturevalue("s3_options")


def _moto_api(endpoint: str, path: str, doc: dict) -> None:
    request = urllib.request.Request(endpoint + path, json.dumps(doc).encode(), method="POST")
    with urllib.request.urlopen(request) as response:
        assert response.status == 201


@pytest.fixture
def moto_lambda(s3_endpoint, monkeypatch):
    """A function on moto's Docker-less Lambda (it answers with queued responses, else echoes the
    request); the Lambda endpoint comes from AWS_ENDPOINT_URL_LAMBDA, as in any AWS client."""
    import boto3
    _moto_api(s3_endpoint, "/moto-api/config", {"lambda": {"use_docker": False}})
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", s3_endpoint)
    session = boto3.Session(region_name=REGION)
    role = session.client("iam", endpoint_url=s3_endpoint).create_role(
        RoleName=f"worker-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("stub.py", "def handler(event, context):\n    return event\n")
    name = f"worker-{uuid.uuid4().hex[:8]}"
    session.client("lambda", endpoint_url=s3_endpoint).create_function(
        FunctionName=name, Runtime="python3.12", Role=role, Handler="stub.handler",
        Code={"ZipFile": code.getvalue()})
    try:
        yield name, lambda response: _moto_api(s3_endpoint, "/moto-api/static/lambda-simple/response",
                                                {"results": [response], "region": REGION})
    finally:
        _moto_api(s3_endpoint, "/moto-api/config", {"lambda": {"use_docker": True}})
