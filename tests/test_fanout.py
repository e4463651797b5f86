"""compactor/fanout.py: compaction tasks fanned out through FunctionExecutor, each call run by
compactor/handler.py's worker in a separate process (`python -m compactor.handler worker`, the
local stand-in for a Lambda invocation), give the same snapshot and Iceberg table as in-process
compaction; large calls and results go through the bucket and are deleted; worker exceptions
surface; and the default Lambda invoke works over HTTP against moto's Lambda."""
import base64
import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import cloudpickle
import pyarrow as pa
import pytest

import compactor
from compactor.fanout import FunctionExecutor, InvocationError, RemoteTraceback
from conftest import BUCKET
from helpers import create, events
from iceberg_readers import iceberg_properties, pyiceberg_rows

ROOT = Path(__file__).resolve().parents[1]
FUNCTION = "flussfs-compactor-worker"


def subprocess_invoke(function_name: str, request: bytes) -> bytes:
    """Stand-in for a synchronous Lambda invoke: the worker handler in a separate process."""
    done = subprocess.run([sys.executable, "-m", "compactor.handler", "worker"], input=request,
                          capture_output=True, cwd=ROOT, timeout=300)
    if done.returncode:
        raise RuntimeError(f"worker process exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    return done.stdout


class Recorder:
    """An invoke that records every request and response (parsed) and their sizes."""

    def __init__(self, invoke=subprocess_invoke):
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
    invoke, tasks = Recorder(), 0
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
    invoke = Recorder()
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

    with FunctionExecutor(FUNCTION, invoke=subprocess_invoke) as executor:
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

    with FunctionExecutor(FUNCTION, invoke=subprocess_invoke) as executor:
        with pytest.raises(RuntimeError, match="NeedsTwoArguments: the task broke"):
            executor.submit(explode).result()


def test_worker_reads_spilled_payloads_only_under_its_own_prefix(monkeypatch):
    """A request naming a payload outside the worker's spill prefix is refused, not read."""
    from compactor.fanout import run_request
    monkeypatch.setenv("FLUSSFS_FANOUT_SPILL_URI", "s3://tables/_flussfs_fanout/")
    response = run_request({"id": "x", "payload_uri": "s3://tables/orders/_flussfs/table/x.meta"})
    error = cloudpickle.loads(base64.b64decode(response["error"]))
    assert isinstance(error, InvocationError) and "outside this worker's spill prefix" in str(error)


def test_compaction_task_payloads_are_far_under_the_inline_limit(s3_uri, s3_options):
    """A real compaction task's request and response (a bucket with data and delete files from
    earlier rounds) are a few KiB: far under the 256 KiB inline limit and Lambda's 6 MB."""
    table = create(s3_uri, primary_key=["id"], buckets=4, storage_options=s3_options)
    invoke = Recorder()
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
