"""The compactor as AWS Lambda functions (terraform/: handlers `compactor.handler.compact_handler`
and `compactor.handler.worker_handler`).

Invariants:
- `compact_handler` compacts every table it is given, each on its own: one failing table never
  stops the others. It logs a one-line JSON summary and, if any table failed, then raises, so
  Lambda's retries, dead-letter queue and Errors alarm see the failure. Invoked twice with the
  same event, the second call commits nothing (compact() finds nothing new) and reports the same
  metadata location.
- After each table (compacted or not) it prints one CloudWatch Embedded Metric Format line,
  `flussfs/CompactionLagSeconds{Table=<uri>}`: the age of the oldest commit the current snapshot
  does not cover, 0 when it covers all. A compactor that keeps failing keeps reporting a growing
  lag as long as the table can be read.
- With FLUSSFS_GLUE_DATABASE set, the AWS Glue table of each compacted table points at its
  current Iceberg metadata; Glue never moves back to an older version, and a Glue name that
  another table's registration holds is never taken over (the table reports an error).
- `worker_handler` runs one fan-out call (compactor/fanout.py) and always answers with a
  response, the call's exception included.

Environment: FLUSSFS_TABLES (JSON list, for events that name no tables), FLUSSFS_STORAGE_OPTIONS
(JSON s3fs options; unset in AWS, where the role's credentials serve), FLUSSFS_WORKER_FUNCTION and
FLUSSFS_FANOUT_SPILL_URI (fan tasks out), FLUSSFS_FANOUT_CONCURRENCY (invocations in flight,
default 32), FLUSSFS_FANOUT_TRUST (the worker: "compaction", the default, or "any";
compactor/fanout.py), FLUSSFS_GLUE_DATABASE. Glue and Lambda endpoints come
from the AWS environment as for any AWS client (AWS_REGION, AWS_ENDPOINT_URL_GLUE, ...).
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from contextlib import redirect_stdout

import flussfs
from flussfs import snapshots
from flussfs.errors import ConflictError, FlussError, InvalidInputError
from flussfs.format.snapshot import empty
from flussfs.io import parallel
from flussfs.serverless.config import env_json, storage_options

from .cli import summary
from .fanout import MAX_WORKERS_DEFAULT, FunctionExecutor, run_request
from .job import compact_table

log = logging.getLogger(__name__)

METRIC_NAMESPACE = "flussfs"
LAG_METRIC = "CompactionLagSeconds"
_VERSION = re.compile(r"/v(\d+)\.metadata\.json$")


class CompactionFailedError(FlussError):
    """At least one table of a scheduled compaction failed; the summary names each with its error."""


def compact_handler(event, context=None) -> dict:
    """Compact the event's tables; the summary {"tables": [...], "errors": [...]}."""
    uris = table_uris(event)
    options = storage_options()
    worker = os.environ.get("FLUSSFS_WORKER_FUNCTION")
    executor = (FunctionExecutor(worker, spill_uri=os.environ.get("FLUSSFS_FANOUT_SPILL_URI"),
                                 storage_options=options, max_workers=fanout_concurrency())
                if worker else None)
    try:
        done, errors = _compact_each(uris, options, executor)
    finally:
        if executor is not None:
            executor.shutdown(wait=True)
    out = {"tables": done, "errors": errors}
    print(json.dumps(out), flush=True)
    if errors:
        raise CompactionFailedError(f"{len(errors)} of {len(uris)} tables failed: "
                                    + "; ".join(f"{e['uri']}: {e['error']}" for e in errors))
    return out


def fanout_concurrency() -> int:
    """FLUSSFS_FANOUT_CONCURRENCY: the most worker invocations in flight (the worker function's
    reserved concurrency; more would only be throttled)."""
    text = os.environ.get("FLUSSFS_FANOUT_CONCURRENCY") or str(MAX_WORKERS_DEFAULT)
    if not text.isdigit() or int(text) < 1:
        raise InvalidInputError(f"FLUSSFS_FANOUT_CONCURRENCY={text!r}: expected a whole number >= 1")
    return int(text)


def _compact_each(uris: list[str], options, executor) -> tuple[list, list]:
    done, errors = [], []
    database = os.environ.get("FLUSSFS_GLUE_DATABASE")
    for uri in uris:
        try:
            entry = compact_one(uri, options, executor)
        except Exception as e:  # one table's failure must not stop the others
            log.exception("compacting %s failed", uri)
            errors.append({"uri": uri, "error": f"{type(e).__name__}: {e}"})
            _report_lag_after_failure(uri, options)
            continue
        if database and entry["metadata_location"]:
            try:
                entry["glue"] = glue_register(database, uri, entry["metadata_location"], options)
            except Exception as e:  # the compaction stands; the next run registers it again
                log.exception("registering %s in Glue failed", uri)
                errors.append({"uri": uri, "error": f"Glue: {type(e).__name__}: {e}"})
        done.append(entry)
    return done, errors


def compact_one(uri: str, options, executor) -> dict:
    """Compact one table and print its lag; its summary entry."""
    table = flussfs.open_table(uri, storage_options=options)
    try:
        result = compact_table(table, executor=executor)
        try:  # the compaction stands even if its lag cannot be read now
            lag = compaction_lag_s(table, result.snapshot)
        except FlussError as e:
            log.warning("no compaction lag for %s: %s", uri, e)
            lag = None
    finally:
        table.close()
    if lag is not None:
        print_lag_metric(uri, lag)
    return {"uri": uri, **summary(result), "lag_s": None if lag is None else round(lag, 3)}


def table_uris(event) -> list[str]:
    """The table URIs an event names: `{"tables": [...]}` (EventBridge Scheduler's input), or for
    an EventBridge rule's "Scheduled Event" or an empty event, FLUSSFS_TABLES."""
    if isinstance(event, dict) and "tables" in event:
        uris = event["tables"]
    elif not event or (isinstance(event, dict) and event.get("source") == "aws.events"
                       and event.get("detail-type") == "Scheduled Event"):
        uris = env_json("FLUSSFS_TABLES")
        if uris is None:
            raise InvalidInputError("the event names no tables and FLUSSFS_TABLES is not set")
    else:
        keys = sorted(event) if isinstance(event, dict) else type(event).__name__
        raise InvalidInputError(f"an event the compactor does not know: {keys}; expected "
                                f'{{"tables": [...]}} or a scheduled event')
    if not isinstance(uris, list) or not all(isinstance(u, str) and u for u in uris):
        raise InvalidInputError(f"tables must be a list of table URIs, got {uris!r}")
    return uris


# ---- compaction lag ---------------------------------------------------------------------
def compaction_lag_s(table, snapshot_number: int, now_s: float | None = None) -> float:
    """Seconds since the oldest commit that snapshot `snapshot_number` does not cover (0: none).

    Costs one GET of the snapshot and one GET per bucket, in parallel: a bucket's oldest
    uncovered commit is the one numbered right after its covered commit, or none (a 404). Commit
    timestamps never decrease along a bucket, so that commit is its oldest."""
    snap = (snapshots.load(table.store, snapshot_number, table.buckets) if snapshot_number
            else empty(table.buckets))
    firsts = parallel(lambda b: table.logs[b].read_commit(snap.bucket(b).commit + 1),
                      range(table.buckets))
    oldest_ms = min((c.timestamp_ms for c in firsts if c is not None), default=None)
    if oldest_ms is None:
        return 0.0
    return max(0.0, (time.time() if now_s is None else now_s) - oldest_ms / 1000)


def lag_metric(uri: str, lag_s: float) -> dict:
    """The CloudWatch Embedded Metric Format document of a table's compaction lag."""
    return {"_aws": {"Timestamp": int(time.time() * 1000),
                     "CloudWatchMetrics": [{"Namespace": METRIC_NAMESPACE, "Dimensions": [["Table"]],
                                            "Metrics": [{"Name": LAG_METRIC, "Unit": "Seconds"}]}]},
            "Table": uri, LAG_METRIC: round(lag_s, 3)}


def print_lag_metric(uri: str, lag_s: float) -> None:
    # Lambda sends stdout to CloudWatch Logs, which turns an EMF line into a metric.
    print(json.dumps(lag_metric(uri, lag_s)), flush=True)


def _report_lag_after_failure(uri: str, options) -> None:
    try:
        table = flussfs.open_table(uri, storage_options=options)
        try:
            lag = compaction_lag_s(table, snapshots.latest_number(table.store))
        finally:
            table.close()
    except Exception as e:  # a table that cannot be read has no lag to report
        log.warning("no compaction lag for %s: %s", uri, e)
        return
    print_lag_metric(uri, lag)


# ---- AWS Glue -----------------------------------------------------------------------------
def glue_table_name(uri: str) -> str:
    """The Glue table name of a table: its URI's last path component, lower case, [a-z0-9_]."""
    name = re.sub(r"[^a-z0-9_]", "_", uri.rstrip("/").rsplit("/", 1)[-1].lower())
    if not name.strip("_"):
        raise InvalidInputError(f"{uri}: no Glue table name can be made of its last path component")
    return name


def glue_register(database: str, uri: str, location: str, options) -> str:
    """Point Glue table `database.<name>` at `location`: "registered", "updated" or "unchanged".

    pyiceberg's GlueCatalog has no public call that moves an existing table to a metadata file
    it did not write, so an update does what its commit_table does: the same table input
    (pyiceberg's `_construct_table_input`: table_type=ICEBERG, metadata_location,
    previous_metadata_location, columns) and Glue's optimistic lock on the table's VersionId."""
    from pyiceberg.catalog.glue import GlueCatalog, _construct_table_input
    from pyiceberg.exceptions import TableAlreadyExistsError
    from pyiceberg.io import load_file_io
    from pyiceberg.serializers import FromInputFile

    catalog = GlueCatalog("flussfs", **_pyiceberg_properties(options))
    name, glue = glue_table_name(uri), catalog.glue
    try:
        current = glue.get_table(DatabaseName=database, Name=name)["Table"]
    except glue.exceptions.EntityNotFoundException:
        try:
            catalog.register_table((database, name), location)
            return "registered"
        except TableAlreadyExistsError:  # a racing compactor registered it first
            current = glue.get_table(DatabaseName=database, Name=name)["Table"]
    previous = _check_glue_table(current, database, name, uri)
    if _version(previous) >= _version(location):
        return "unchanged"
    metadata = FromInputFile.table_metadata(load_file_io(catalog.properties, location).new_input(location))
    table_input = _construct_table_input(name, location, {}, metadata, current, previous)
    glue.update_table(DatabaseName=database, TableInput=table_input,
                      VersionId=current["VersionId"], SkipArchive=True)
    return "updated"


def _check_glue_table(current: dict, database: str, name: str, uri: str) -> str:
    """The metadata location a Glue table of ours points at; raises if the table is not ours."""
    params = current.get("Parameters", {})
    previous = params.get("metadata_location", "")
    if params.get("table_type", "").upper() != "ICEBERG" or \
            not previous.startswith(uri.rstrip("/") + "/metadata/"):
        raise ConflictError(f"Glue table {database}.{name} exists and is not the Iceberg table of "
                            f"{uri} (metadata_location {previous or 'missing'})")
    return previous


def _version(location: str) -> int:
    match = _VERSION.search(location)
    return int(match.group(1)) if match else -1


def _pyiceberg_properties(options) -> dict:
    """pyiceberg FileIO properties for s3fs `options` (Glue itself takes the AWS environment)."""
    if not options:
        return {}
    props = {"s3.region": (options.get("client_kwargs") or {}).get("region_name")}
    for fs_key, ice_key in (("endpoint_url", "s3.endpoint"), ("key", "s3.access-key-id"),
                            ("secret", "s3.secret-access-key"), ("token", "s3.session-token")):
        props[ice_key] = options.get(fs_key)
    return {k: v for k, v in props.items() if v}


# ---- the fan-out worker -------------------------------------------------------------------
def worker_handler(event, context=None) -> dict:
    """Run one FunctionExecutor call (compactor/fanout.py has the wire format)."""
    return run_request(event)


def main(argv=None) -> int:
    """`python -m compactor.handler worker|compact`: one event (JSON) on stdin, the handler's
    response (JSON) on stdout; anything the handler prints goes to stderr."""
    argv = sys.argv[1:] if argv is None else argv
    handlers = {"worker": worker_handler, "compact": compact_handler}
    if len(argv) != 1 or argv[0] not in handlers:
        print("usage: python -m compactor.handler worker|compact  < event.json", file=sys.stderr)
        return 2
    event = json.load(sys.stdin)
    out = sys.stdout
    with redirect_stdout(sys.stderr):
        response = handlers[argv[0]](event, None)
    out.write(json.dumps(response))
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
