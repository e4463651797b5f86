"""compactor/fanout.py: compaction tasks fanned out through FunctionExecutor, each call run by
compactor/handler.py's worker in a separate process (`python -m compactor.handler worker`, the
local stand-in for a Lambda invocation), give the same snapshot and Iceberg table as in-process
compaction; large calls and results go through the bucket and are deleted; worker exceptions
surface; and the default Lambda invoke works over HTTP against moto's Lambda."""
import base64
import json
import os
import pickle
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cloudpickle
import pyarrow as pa
import pytest

import compactor
from compactor.fanout import (THROTTLED_ATTEMPTS_MAX, FunctionExecutor, InvocationError, RemoteTraceback,
                              run_request)
from compactor.tasks import run_pickled
from compactor.trusted import UntrustedPayloadError
from conftest import BUCKET
from helpers import create, events
from iceberg_readers import iceberg_properties, pyiceberg_rows

ROOT = Path(__file__).resolve().parents[1]
FUNCTION = "flussfs-compactor-worker"
CALL_ID = uuid.uuid4().hex  # a request id as FunctionExecutor makes them


def subprocess_invoker(**env):
    """Stand-in for a synchronous Lambda invoke: the worker handler in a separate process, whose
    environment adds `env` (the worker function's configuration)."""
    def invoke(function_name: str, request: bytes) -> bytes:
        done = subprocess.run([sys.executable, "-m", "compactor.handler", "worker"], input=request,
                              capture_output=True, cwd=ROOT, timeout=300, env={**os.environ, **env})
        if done.returncode:
            raise RuntimeError(f"worker process exited {done.returncode}: {done.stderr.decode()[-2000:]}")
        return done.stdout
    return invoke


def compaction_worker(s3_options, **env):
    """A worker as deployed: it runs compaction tasks only, with its own storage options."""
    return subprocess_invoker(FLUSSFS_STORAGE_OPTIONS=json.dumps(s3_options), **env)


# A worker that runs any call (FLUSSFS_FANOUT_TRUST=any), for the tests of the wire itself.
any_call_worker = subprocess_invoker(FLUSSFS_FANOUT_TRUST="any")


class Recorder:
    """An invoke that records every request and response (parsed) and their sizes."""

    def __init__(self, invoke):
        self.invoke, self.calls, self.lock = invoke, [], threading.Lock()

    def __call__(self, function_name: str, request: bytes) -> bytes:
        response = self.invoke(function_name, request)
        with self.lock:
            self.calls.append((json.loads(request), json.loads(response), len(request), len(response)))
        return response


def write_round(table, n: int) -> None:
    """Round n of a workload: upserts and deletes on a primary-key table, appends on a log table."""
    if table.primary_key:
        table.upsert(events(range(n * 150, n * 150 + 400)))
        table.delete(pa.table({"id": pa.array(range(n * 150, n * 150 + 40, 3), pa.int64())}))
    else:
        table.append(events(range(n * 300, n * 300 + 300)))
        table.append(events(range(n * 300, n * 300 + 50)))


def sorted_rows(t: pa.Table) -> list[tuple]:
    return sorted(tuple(r.values()) for r in t.select(["id", "name", "score"]).to_pylist())


def twins(s3_uri, s3_options, kind):
    pk = ["id"] if kind == "pk" else None
    return [create(uri, primary_key=pk, buckets=4, storage_options=s3_options)
            for uri in (s3_uri, s3_uri + "-twin")]


@pytest.mark.parametrize("kind", ["pk", "log"])
def test_fanned_out_compaction_equals_in_process(s3_uri, s3_options, kind):
    """Fanned out to worker processes, compaction of a table gives the same snapshot rows,
    Iceberg rows and counts as in-process compaction of an identical twin, round after round."""
    table, twin = twins(s3_uri, s3_options, kind)
    invoke, tasks = Recorder(compaction_worker(s3_options)), 0
    for n in range(2):
        for t in (table, twin):
            write_round(t, n)
        with FunctionExecutor(FUNCTION, invoke=invoke, storage_options=s3_options) as executor:
            fanned = compactor.compact(table.uri, storage_options=s3_options, executor=executor)
        local = compactor.compact(twin.uri, storage_options=s3_options)
        tasks += len(fanned.buckets)
        assert (fanned.snapshot, fanned.committed, fanned.changes, fanned.rows_written) == \
               (local.snapshot, local.committed, local.changes, local.rows_written)
        expected = sorted_rows(twin.scan().to_arrow())
        assert sorted_rows(table.scan().to_arrow()) == expected
        props = iceberg_properties(s3_options)
        assert sorted_rows(pyiceberg_rows(fanned.metadata_location, props)) == expected
        assert sorted_rows(pyiceberg_rows(local.metadata_location, props)) == expected
    assert tasks >= 2 and len(invoke.calls) == tasks  # one invocation per bucket task
    assert all("result" in response for _, response, _, _ in invoke.calls)


def test_large_calls_and_results_spill_to_the_bucket_and_are_deleted(s3_uri, s3_options):
    """With a tiny inline limit every call and result travels through the spill prefix, the
    compaction is still right, and no spill object is left behind."""
    import s3fs
    table = create(s3_uri, primary_key=["id"], buckets=4, storage_options=s3_options)
    write_round(table, 0)
    spill = f"s3://{BUCKET}/{uuid.uuid4().hex}/_flussfs_fanout"
    invoke = Recorder(compaction_worker(s3_options, FLUSSFS_FANOUT_SPILL_URI=spill))
    with FunctionExecutor(FUNCTION, invoke=invoke, spill_uri=spill, storage_options=s3_options,
                          inline_bytes_max=1) as executor:
        result = compactor.compact(s3_uri, storage_options=s3_options, executor=executor)
    assert invoke.calls and all("payload_uri" in request and "payload" not in request and
                                set(response) == {"result_uri"}
                                for request, response, _, _ in invoke.calls)
    assert all(r["payload_uri"].startswith(spill + "/") for r, _, _, _ in invoke.calls)
    expected = sorted_rows(table.scan().to_arrow())
    assert len(expected) == 400 - 14
    assert sorted_rows(pyiceberg_rows(result.metadata_location, iceberg_properties(s3_options))) == expected
    fs = s3fs.S3FileSystem(**s3_options)
    assert fs.find(spill[len("s3://"):], refresh=True) == []


def test_worker_exception_surfaces_from_future_result():
    """An exception raised by a call in the worker process is raised by future.result(), with
    the worker's message and its traceback as the cause."""
    def explode(n):
        raise ValueError(f"task {n} exploded in process {os.getpid()}")

    with FunctionExecutor(FUNCTION, invoke=any_call_worker) as executor:
        future = executor.submit(explode, 7)
        with pytest.raises(ValueError, match="task 7 exploded in process") as info:
            future.result()
    assert str(os.getpid()) not in str(info.value)  # it ran elsewhere
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "in explode" in str(info.value.__cause__)


def test_worker_exception_that_does_not_unpickle_still_reports_the_worker_failure():
    """An exception that pickles but cannot be rebuilt still reaches the caller with its message
    (not an unrelated TypeError from unpickling)."""
    class NeedsTwoArguments(Exception):   # local, so cloudpickle sends the class by value
        def __init__(self, message, cause):
            super().__init__(message)
            self.cause = cause

    def explode():
        raise NeedsTwoArguments("the task broke", "disk")

    with FunctionExecutor(FUNCTION, invoke=any_call_worker) as executor:
        with pytest.raises(RuntimeError, match="NeedsTwoArguments: the task broke"):
            executor.submit(explode).result()


def test_worker_reads_spilled_payloads_only_under_its_own_prefix(monkeypatch):
    """A request naming a payload outside the worker's spill prefix is refused, not read."""
    monkeypatch.setenv("FLUSSFS_FANOUT_SPILL_URI", "s3://tables/_flussfs_fanout/")
    response = run_request({"id": CALL_ID, "payload_uri": "s3://tables/orders/_flussfs/table/x.meta"})
    error = cloudpickle.loads(base64.b64decode(response["error"]))
    assert isinstance(error, InvocationError) and "outside this worker's spill prefix" in str(error)


def _marker_maker(marker: Path):
    """An object whose unpickling creates `marker` through os.system, as a hostile payload would."""
    class Hostile:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)
    return Hostile()


def _response_error(response: dict) -> Exception:
    assert set(response) >= {"error", "traceback"}, response
    return cloudpickle.loads(base64.b64decode(response["error"]))


def test_compaction_worker_refuses_functions_sent_by_value(tmp_path):
    """A worker as deployed runs compaction tasks only: a function sent by value is refused
    before it runs, and the caller gets an error naming what was refused."""
    marker = tmp_path / "ran"

    def touch():
        marker.write_text("the worker ran code it was sent")

    with FunctionExecutor(FUNCTION, invoke=compaction_worker({})) as executor:
        with pytest.raises(UntrustedPayloadError, match=r"names cloudpickle\.\S+, which this worker "
                                                        r"does not accept .*compactor\.tasks\.run_pickled"):
            executor.submit(touch).result()
        with pytest.raises(UntrustedPayloadError, match=r"names builtins\.len"):
            executor.submit(len, "abc").result()
    assert not marker.exists()


@pytest.mark.parametrize("where", ["call", "task", "arguments"])
def test_compaction_worker_runs_nothing_of_a_hostile_payload(tmp_path, monkeypatch, where):
    """A payload naming os.system, as the call, inside the task bytes, or as an argument of
    run_pickled, is refused by the unpickler; os.system never runs."""
    monkeypatch.delenv("FLUSSFS_FANOUT_TRUST", raising=False)
    marker = tmp_path / "ran"
    hostile = _marker_maker(marker)
    call = {"call": hostile,
            "task": (run_pickled, (cloudpickle.dumps(hostile),), {}),
            "arguments": (run_pickled, (b"",), {"loads": hostile})}[where]
    response = run_request({"id": CALL_ID, "payload": base64.b64encode(cloudpickle.dumps(call)).decode()})
    error = _response_error(response)
    assert isinstance(error, UntrustedPayloadError) and ".system, which this worker does not accept" in str(error)
    assert not marker.exists()
    # The same call through a worker trusting any call does run: the refusal above is the guard.
    monkeypatch.setenv("FLUSSFS_FANOUT_TRUST", "any")
    if where == "call":
        run_request({"id": "y", "payload": base64.b64encode(cloudpickle.dumps(call)).decode()})
        assert marker.exists()


def test_compaction_worker_changes_no_accepted_class(monkeypatch):
    """A payload that sets state on an accepted class itself (pickle's BUILD on FileRef, which
    would setattr on the class and break every later task of a warm worker) is refused, and the
    class is unchanged."""
    from flussfs.format.snapshot import BucketState, FileRef

    def text(s):
        b = s.encode()
        return pickle.SHORT_BINUNICODE + bytes([len(b)]) + b

    def name(cls):
        return text(cls.__module__) + text(cls.__qualname__) + pickle.STACK_GLOBAL

    hostile = (pickle.PROTO + b"\x04" + name(FileRef) + pickle.NONE + pickle.EMPTY_DICT
               + text("__reduce_ex__") + name(BucketState) + pickle.SETITEM + pickle.TUPLE2
               + pickle.BUILD + pickle.STOP)
    monkeypatch.delenv("FLUSSFS_FANOUT_TRUST", raising=False)
    before = FileRef.__dict__.get("__reduce_ex__")
    call = cloudpickle.dumps((run_pickled, (hostile,), {}))
    error = _response_error(run_request({"id": CALL_ID, "payload": base64.b64encode(call).decode()}))
    assert isinstance(error, UntrustedPayloadError) and "sets state on type" in str(error)
    assert FileRef.__dict__.get("__reduce_ex__") is before
    assert cloudpickle.loads(cloudpickle.dumps(FileRef("k", 1, 1, 1))) == FileRef("k", 1, 1, 1)


def test_compaction_worker_uses_its_own_storage_options(s3_uri, s3_options, monkeypatch):
    """Storage options in a request or its task (here an endpoint nobody listens on) are
    ignored: the task reads and writes with the worker's FLUSSFS_STORAGE_OPTIONS and succeeds."""
    from compactor import job
    from flussfs import snapshots
    table = create(s3_uri, primary_key=["id"], buckets=2, storage_options=s3_options)
    write_round(table, 0)
    elsewhere = {**s3_options, "endpoint_url": "http://127.0.0.1:9"}
    task = job._plan(table, snapshots.current(table.store, 2), elsewhere, True)[0]
    assert task.storage_options == elsewhere
    monkeypatch.setenv("FLUSSFS_STORAGE_OPTIONS", json.dumps(s3_options))
    monkeypatch.delenv("FLUSSFS_FANOUT_TRUST", raising=False)
    payload = cloudpickle.dumps((run_pickled, (cloudpickle.dumps(task),), {}))
    response = run_request({"id": CALL_ID, "payload": base64.b64encode(payload).decode(),
                            "storage_options": elsewhere})
    assert "result" in response, response.get("traceback")
    result = cloudpickle.loads(cloudpickle.loads(base64.b64decode(response["result"])))
    assert result.state.bucket == task.bucket and result.stats["changes"] > 0


def test_worker_trust_setting_is_checked(monkeypatch):
    """An unknown FLUSSFS_FANOUT_TRUST is an error naming the setting, not a silent default."""
    monkeypatch.setenv("FLUSSFS_FANOUT_TRUST", "some")
    error = _response_error(run_request({"id": CALL_ID, "payload": ""}))
    assert isinstance(error, InvocationError) and "FLUSSFS_FANOUT_TRUST='some'" in str(error)


def test_compaction_worker_without_spill_prefix_reads_no_url_and_takes_only_hex_ids(monkeypatch):
    """With no FLUSSFS_FANOUT_SPILL_URI a compaction worker fetches no URL a request names (it
    could be any endpoint), and a request id, which names spilled results, must be 32 hex digits."""
    monkeypatch.delenv("FLUSSFS_FANOUT_SPILL_URI", raising=False)
    monkeypatch.delenv("FLUSSFS_FANOUT_TRUST", raising=False)
    error = _response_error(run_request({"id": CALL_ID, "payload_uri": "http://127.0.0.1:9/secret"}))
    assert isinstance(error, InvocationError) and "has no spill prefix" in str(error)
    error = _response_error(run_request({"id": "../../tables/orders/x", "payload": ""}))
    assert isinstance(error, InvocationError) and "is not 32 hex digits" in str(error)


def test_compaction_task_payloads_are_far_under_the_inline_limit(s3_uri, s3_options):
    """A real compaction task's request and response (a bucket with data and delete files from
    earlier rounds) are a few KiB: far under the 256 KiB inline limit and Lambda's 6 MB."""
    table = create(s3_uri, primary_key=["id"], buckets=4, storage_options=s3_options)
    invoke = Recorder(compaction_worker(s3_options))
    for n in range(3):
        write_round(table, n)
        with FunctionExecutor(FUNCTION, invoke=invoke, storage_options=s3_options) as executor:
            compactor.compact(s3_uri, storage_options=s3_options, executor=executor)
    requests = [size for _, _, size, _ in invoke.calls]
    responses = [size for _, _, _, size in invoke.calls]
    print(f"\ncompaction task request bytes: {requests}\nresponse bytes: {responses}")
    assert len(requests) == 12
    assert max(requests + responses) < 16 * 1024


# ---- the default invoke: botocore's Lambda client against moto's Lambda --------------------
def test_default_invoke_calls_lambda_over_http(moto_lambda):
    """FunctionExecutor's default invoke sends a synchronous Invoke through botocore and decodes
    the worker's response; an answer that is not a worker's raises InvocationError."""
    name, queue_response = moto_lambda
    queue_response(json.dumps({"result": base64.b64encode(cloudpickle.dumps({"rows": 42})).decode()}))
    with FunctionExecutor(name) as executor:
        assert executor.submit(len, "ignored by the stub").result() == {"rows": 42}
        with pytest.raises(InvocationError, match="not a worker's response"):
            executor.submit(len, "echoed back by the stub").result()


# ---- how many calls are in flight, and throttling -------------------------------------------
def test_calls_in_flight_never_exceed_max_workers(monkeypatch):
    """With max_workers=3, twelve calls run at most three at a time (the worker's reserved
    concurrency, which the compactor handler passes as FLUSSFS_FANOUT_CONCURRENCY)."""
    monkeypatch.setenv("FLUSSFS_FANOUT_TRUST", "any")
    lock, in_flight, most = threading.Lock(), [0], [0]

    def invoke(function_name: str, request: bytes) -> bytes:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        try:
            return json.dumps(run_request(json.loads(request))).encode()
        finally:
            with lock:
                in_flight[0] -= 1

    with FunctionExecutor(FUNCTION, invoke=invoke, max_workers=3) as executor:
        assert [f.result() for f in [executor.submit(time.sleep, 0.05) for _ in range(12)]] == [None] * 12
    assert most[0] == 3


class LambdaStandIn(ThreadingHTTPServer):
    """Lambda's Invoke API on 127.0.0.1: answers the invocations with `statuses` in turn (429
    TooManyRequestsException or 500 ServiceException), then with a worker's response."""

    def __init__(self, statuses: list):
        super().__init__(("127.0.0.1", 0), _LambdaHandler)
        self.statuses, self.requests = statuses, 0
        self.answer = json.dumps({"result": base64.b64encode(cloudpickle.dumps("ran")).decode()}).encode()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _LambdaHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        server = self.server
        server.requests += 1
        if server.requests <= len(server.statuses):
            status = server.statuses[server.requests - 1]
            kind = "TooManyRequestsException" if status == 429 else "ServiceException"
            body = json.dumps({"Type": "User", "message": "Rate Exceeded."}).encode()
            self.send_response(status)
            self.send_header("x-amzn-ErrorType", kind)
        else:
            body = server.answer
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def lambda_stand_in(monkeypatch):
    """Start a LambdaStandIn(statuses) and point botocore's Lambda client at it."""
    import compactor.fanout as fanout
    monkeypatch.setattr(fanout, "RETRY_WAIT_S_MIN", 0.001)
    servers = []

    def start(statuses: list) -> LambdaStandIn:
        server = LambdaStandIn(statuses)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", server.url)
        return server
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("statuses,requests,ok", [
    ([429] * 5, 6, True),                       # throttled calls did not run: retried with backoff
    ([429] * THROTTLED_ATTEMPTS_MAX, THROTTLED_ATTEMPTS_MAX, False),
    ([500], 2, True),                           # after a 5xx the call may have run: one retry
    ([500, 500], 2, False),
    ([429, 429, 500], 4, True),                 # each kind keeps its own count
    ([429, 500, 429, 500], 4, False),
])
def test_default_invoke_retries_throttling_longer_than_server_errors(lambda_stand_in, statuses,
                                                                     requests, ok):
    """Over HTTP through botocore: a throttled invocation is retried up to THROTTLED_ATTEMPTS_MAX
    times, a 5xx once; past that future.result() raises InvocationError naming the attempts."""
    server = lambda_stand_in(statuses)
    with FunctionExecutor(FUNCTION) as executor:
        future = executor.submit(len, "x")
        if ok:
            assert future.result() == "ran"
        else:
            with pytest.raises(InvocationError, match=f"after {requests} attempt"):
                future.result()
    assert server.requests == requests
