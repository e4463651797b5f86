"""Table handles from a Lambda function's environment, kept across warm invocations.

Invariants: one handle per (URI, storage options) per process; a handle is never shared across
different options.
"""
from __future__ import annotations

import json
import os
import threading

import flussfs
from flussfs.errors import InvalidInputError

_tables: dict = {}
_lock = threading.Lock()


def env_json(name: str):
    """The JSON value of environment variable `name`, or None when it is unset or empty."""
    text = os.environ.get(name)
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidInputError(f"{name} is not valid JSON: {e}") from None


def storage_options() -> dict | None:
    options = env_json("FLUSSFS_STORAGE_OPTIONS")
    if options is not None and not isinstance(options, dict):
        raise InvalidInputError("FLUSSFS_STORAGE_OPTIONS must be a JSON object")
    return options


def table_from_env(uri: str | None = None):
    """The table named by `uri` or FLUSSFS_TABLE, opened once per process."""
    uri = uri or os.environ.get("FLUSSFS_TABLE")
    if not uri:
        raise InvalidInputError("no table: set FLUSSFS_TABLE to the table's URI")
    options = storage_options()
    key = (uri, json.dumps(options, sort_keys=True))
    with _lock:
        if key not in _tables:
            _tables[key] = flussfs.open_table(uri, storage_options=options)
        return _tables[key]
