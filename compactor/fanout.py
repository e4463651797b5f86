"""FunctionExecutor: a `concurrent.futures.Executor` whose calls run as synchronous AWS Lambda
invocations of compactor/handler.py's `worker_handler`, so `compact(uri, executor=...)` fans
its bucket tasks out across functions.

Invariants:
- A call `(fn, args, kwargs)` and its result travel as cloudpickle bytes: base64 inside the JSON
  payload up to `inline_bytes_max`, above it as an object under `spill_uri` whose URL alone
  travels. So no payload nears Lambda's 6 MB synchronous limit; large data goes through the
  bucket, never the payload.
- Each spilled object has a unique key (the call's id) and is deleted once read: the call's after
  its invocation returns, the result's after the caller has read it. A response lost in transit
  can leave a result object behind; a lifecycle rule on the spill prefix collects those.
- A worker's exception is raised again by `future.result()`, with the worker's traceback as its
  cause. Failures outside the call (Lambda timeout, out of memory, throttling past the retries)
  raise `InvocationError`.
- At most `max_workers` invocations are in flight; the compactor handler sets it to the worker's
  reserved concurrency (FLUSSFS_FANOUT_CONCURRENCY), so its own calls alone do not exceed it
  (workers of a killed earlier run may still hold some of it: those calls are throttled and
  retried, for about a minute at most).
- A worker runs compaction tasks only, unless its environment sets FLUSSFS_FANOUT_TRUST=any: a
  request's call must be `compactor.tasks.run_pickled` on a pickled BucketTask, and both are
  unpickled by compactor/trusted.py, which refuses every other global before anything runs; the
  task runs with the worker's own storage options (FLUSSFS_STORAGE_OPTIONS), never a request's,
  and reads or spills only under its spill prefix (FLUSSFS_FANOUT_SPILL_URI; without one, none).
  So whoever may invoke the worker, or write to its spill prefix, can at most have it compact a
  table its role reaches, never run code of their own or send its signed requests elsewhere.
  With `any`, every cloudpickled call runs with the request's storage options (for executors of
  other work): then invoking the worker is running code as its role.
- The caller unpickles what its own worker function answers (results and exceptions) in full.
  Spilled objects are put-if-absent under the call's random id (a compaction worker takes no
  other id), so nobody can put a result there first or swap it after the worker wrote it.

Wire format (one JSON object each way):
  request   {"id", "payload" | "payload_uri", "spill_uri"?, "inline_bytes_max", "storage_options"?
             (read by a worker trusting `any` only)}
  response  {"result": b64} | {"result_uri": url} | {"error": b64 pickled exception, "traceback"}
"""
from __future__ import annotations

import base64
import dataclasses
import functools
import json
import os
import logging
import random
import re
import time
import traceback
import uuid
from collections import Counter
from concurrent.futures import Executor, Future, ThreadPoolExecutor

import cloudpickle
import fsspec

from flussfs.errors import FlussError
from flussfs.serverless import config

from . import tasks, trusted

log = logging.getLogger(__name__)

INLINE_BYTES_MAX_DEFAULT = 256 * 1024  # base64 bytes; Lambda's synchronous limit is 6 MB
MAX_WORKERS_DEFAULT = 32               # invocations in flight
INVOKE_ATTEMPTS_MAX = 2                # one retry after a 5xx (the call may have run)
THROTTLED_ATTEMPTS_MAX = 8             # throttled invocations did not run: retry these longer
ATTEMPTS_MAX = {"throttled": THROTTLED_ATTEMPTS_MAX, "server": INVOKE_ATTEMPTS_MAX}
READ_TIMEOUT_S = 960                   # above Lambda's 900 s maximum run time
CONNECT_TIMEOUT_S = 10
RETRY_WAIT_S_MIN = 0.5                 # backoff: doubling from this, with full jitter
RETRY_WAIT_S_MAX = 16.0
TRUST_ENV = "FLUSSFS_FANOUT_TRUST"     # "compaction" (the default) or "any"
COMPACTION_CALL_GLOBALS = frozenset({(tasks.run_pickled.__module__, tasks.run_pickled.__qualname__)})


class InvocationError(FlussError):
    """A function invocation failed outside the call: Lambda reported an unhandled error (a
    timeout, out of memory, a failed init), refused the invocation, or answered with something
    that is not a worker's response. The call may or may not have run; compaction tasks write
    only new, uniquely named files, so running one again is safe."""


class RemoteTraceback(Exception):
    """The worker's formatted traceback, attached as the cause of a re-raised worker exception."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


class FunctionExecutor(Executor):
    """Runs each submitted call as one synchronous invocation of `function_name`, at most
    `max_workers` at once. `invoke(function_name, request: bytes) -> response bytes` replaces
    the Lambda call (tests run the worker in a subprocess); by default it is `lambda_invoker`."""

    def __init__(self, function_name: str, *, invoke=None, spill_uri: str | None = None,
                 storage_options: dict | None = None, max_workers: int = MAX_WORKERS_DEFAULT,
                 inline_bytes_max: int = INLINE_BYTES_MAX_DEFAULT):
        self.function_name = function_name
        self.spill_uri = spill_uri.rstrip("/") if spill_uri else None
        self.storage_options = storage_options
        self.inline_bytes_max = inline_bytes_max
        self._invoke = invoke or lambda_invoker(max_workers)
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="flussfs-fanout")

    def submit(self, fn, /, *args, **kwargs) -> Future:
        # Pickled now, so the call is the one submitted even if its arguments change later.
        return self._pool.submit(self._call, cloudpickle.dumps((fn, args, kwargs)))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def _call(self, call: bytes):
        request = {"id": uuid.uuid4().hex, "inline_bytes_max": self.inline_bytes_max}
        if self.spill_uri:
            request["spill_uri"] = self.spill_uri
        if self.storage_options:
            request["storage_options"] = self.storage_options
        spilled = _pack(request, "payload", call, self.inline_bytes_max, self.spill_uri,
                        self.storage_options)
        try:
            response = self._invoke(self.function_name, json.dumps(request).encode())
        finally:
            if spilled:
                _delete(spilled, self.storage_options)
        return self._outcome(_parse(self.function_name, response))

    def _outcome(self, response: dict):
        if "error" in response:
            remote = RemoteTraceback(response.get("traceback", ""))
            try:
                error = cloudpickle.loads(base64.b64decode(response["error"]))
            except Exception as e:  # e.g. an exception whose __init__ takes other arguments
                raise InvocationError(f"{self.function_name}: the worker failed, and its exception "
                                      f"does not unpickle here ({e}); its traceback follows") from remote
            raise error from remote
        if "result" in response:
            return cloudpickle.loads(base64.b64decode(response["result"]))
        url = response["result_uri"]
        try:
            data = _get(url, self.storage_options)
        finally:
            _delete(url, self.storage_options)
        return cloudpickle.loads(data)


# ---- the worker's side ------------------------------------------------------------------
def run_request(request: dict) -> dict:
    """Run one request's call and the response to send back (what worker_handler returns)."""
    try:
        trust = _trust()
        # A compaction worker reads and writes storage with its own configuration only: options
        # from a request could send the role's signed requests to another endpoint.
        options = request.get("storage_options") if trust == "any" else config.storage_options()
        call_id = _call_id(request, trust)
        data = (base64.b64decode(request["payload"]) if "payload" in request
                else _get(_allowed(request["payload_uri"], trust), options))
        fn, args, kwargs = _call_of(data, trust, options)
        result = cloudpickle.dumps(fn(*args, **kwargs))
        response = {}
        spill = request.get("spill_uri")
        _pack(response, "result", result, request.get("inline_bytes_max", INLINE_BYTES_MAX_DEFAULT),
              spill and _allowed(spill, trust), options, call_id)
        return response
    except Exception as e:  # every failure goes back to the caller, which raises it
        return {"error": base64.b64encode(_pickled_error(e)).decode(),
                "traceback": traceback.format_exc()}


def _trust() -> str:
    trust = os.environ.get(TRUST_ENV, "compaction")
    if trust not in ("compaction", "any"):
        raise InvocationError(f"{TRUST_ENV}={trust!r}: expected 'compaction' or 'any'")
    return trust


def _call_of(data: bytes, trust: str, options) -> tuple:
    """The (fn, args, kwargs) a request carries, as far as `trust` lets it run; a compaction
    task runs with the worker's storage `options`, whatever the task says."""
    if trust == "any":
        return cloudpickle.loads(data)
    call = trusted.loads(data, COMPACTION_CALL_GLOBALS)
    if not (isinstance(call, tuple) and len(call) == 3 and call[0] is tasks.run_pickled
            and call[2] == {} and len(call[1]) == 1 and isinstance(call[1][0], bytes)):
        raise trusted.UntrustedPayloadError("the payload is not a compaction task: this worker runs "
                                            f"only compactor.tasks.run_pickled(task bytes) ({TRUST_ENV})")

    def task_loads(payload: bytes):
        task = trusted.loads(payload, tasks.TASK_GLOBALS)
        if not isinstance(task, tasks.BucketTask):
            raise trusted.UntrustedPayloadError(f"the payload is not a BucketTask: {type(task).__name__}")
        return dataclasses.replace(task, storage_options=options)

    return functools.partial(tasks.run_pickled, loads=task_loads), call[1], {}


def _pickled_error(e: Exception) -> bytes:
    try:
        data = cloudpickle.dumps(e)
        cloudpickle.loads(data)  # some exceptions pickle but do not unpickle
        return data
    except Exception:  # such an exception still reaches the caller as text
        return cloudpickle.dumps(RuntimeError(f"{type(e).__name__}: {e}"))


def _allowed(url: str, trust: str) -> str:
    """`url` if it is or lies under the worker's own spill prefix (FLUSSFS_FANOUT_SPILL_URI): a
    request cannot make the worker read or write elsewhere. Without a prefix a compaction worker
    takes inline payloads only; a worker trusting `any` goes where the request says."""
    prefix = os.environ.get("FLUSSFS_FANOUT_SPILL_URI")
    if not prefix:
        if trust == "any":
            return url
        raise InvocationError(f"{url}: this worker has no spill prefix (FLUSSFS_FANOUT_SPILL_URI), "
                              f"so it reads and writes no spilled objects")
    if not (url.rstrip("/") + "/").startswith(prefix.rstrip("/") + "/"):
        raise InvocationError(f"{url} lies outside this worker's spill prefix {prefix}")
    return url


def _call_id(request: dict, trust: str) -> str:
    """The request's id (FunctionExecutor's are 32 hex digits); it names spilled results, so a
    compaction worker takes nothing else."""
    call_id = request["id"]
    if trust != "any" and not (isinstance(call_id, str) and re.fullmatch(r"[0-9a-f]{32}", call_id)):
        raise InvocationError(f"request id {call_id!r:.60} is not 32 hex digits")
    return call_id


# ---- payloads and spill objects -----------------------------------------------------------
def _pack(message: dict, field: str, data: bytes, inline_bytes_max: int, spill_uri: str | None,
          storage_options, call_id: str | None = None) -> str | None:
    """Put `data` into `message` inline, or spill it and put its URL under `<field>_uri`;
    the URL spilled to, or None."""
    encoded = base64.b64encode(data).decode()
    if len(encoded) <= inline_bytes_max:
        message[field] = encoded
        return None
    if not spill_uri:
        raise InvocationError(f"a {field} of {len(encoded)} bytes (base64) exceeds inline_bytes_max "
                              f"({inline_bytes_max}) and no spill_uri was given")
    url = f"{spill_uri}/{call_id or message['id']}.{field}.pkl"
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    fs.pipe_file(path, data, mode="create")  # never over an object someone else put there
    message[f"{field}_uri"] = url
    return url


def _get(url: str, storage_options) -> bytes:
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    return fs.cat_file(path)


def _delete(url: str, storage_options) -> None:
    try:
        fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
        fs.rm_file(path)
    except Exception as e:  # the call's outcome stands; the lifecycle rule collects the object
        log.warning("could not delete spilled object %s: %s", url, e)


def _parse(function_name: str, response: bytes) -> dict:
    try:
        parsed = json.loads(response)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or not parsed.keys() & {"result", "result_uri", "error"}:
        raise InvocationError(f"{function_name} answered with something that is not a worker's "
                              f"response: {response[:200]!r}")
    return parsed


# ---- the Lambda call ----------------------------------------------------------------------
def lambda_invoker(max_workers: int = MAX_WORKERS_DEFAULT):
    """invoke(function_name, request) -> response bytes over botocore's Lambda client (region
    and endpoint from the environment, e.g. AWS_REGION, AWS_ENDPOINT_URL_LAMBDA)."""
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    # botocore's own retries are off: it would also retry a read timeout, re-running a call that
    # may still be running. We retry once ourselves, below, on the answers that allow it.
    client = botocore.session.get_session().create_client("lambda", config=Config(
        read_timeout=READ_TIMEOUT_S, connect_timeout=CONNECT_TIMEOUT_S,
        retries={"total_max_attempts": 1}, max_pool_connections=max_workers))

    def invoke(function_name: str, request: bytes) -> bytes:
        failures = Counter()  # by kind: "throttled" or "server"
        while True:
            try:
                response = client.invoke(FunctionName=function_name,
                                         InvocationType="RequestResponse", Payload=request)
                break
            except ClientError as e:
                kind = _failure_kind(e)
                failures[kind] += 1
                if kind is None or failures[kind] >= ATTEMPTS_MAX[kind]:
                    raise InvocationError(f"invoking {function_name} failed after "
                                          f"{sum(failures.values())} attempt(s): {e}") from e
                wait = RETRY_WAIT_S_MIN * 2 ** sum(failures.values())
                time.sleep(random.uniform(0, min(wait, RETRY_WAIT_S_MAX)))
            except BotoCoreError as e:
                raise InvocationError(f"invoking {function_name} failed: {e}") from e
        body = response["Payload"].read()
        if response.get("FunctionError"):
            raise InvocationError(f"{function_name} failed ({response['FunctionError']}): "
                                  f"{_lambda_error(body)}")
        return body

    return invoke


def _failure_kind(e) -> str | None:
    """"throttled" (429: concurrency or rate limits, e.g. other functions of the account; the
    invocation did not run, so it is retried with backoff), "server" (5xx: it may have run, and
    running a compaction task twice is safe, since it writes only new, uniquely named files and
    commits nothing, so it is retried once at the cost of some orphans for GC), or None (not
    retried)."""
    status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return "throttled" if status == 429 else "server" if status >= 500 else None


def _lambda_error(body: bytes) -> str:
    """Lambda's own error document ({"errorType", "errorMessage"}) as one line."""
    try:
        doc = json.loads(body)
        return f"{doc.get('errorType', 'Error')}: {doc.get('errorMessage', '')}"
    except (ValueError, AttributeError):
        return body[:500].decode(errors="replace")
