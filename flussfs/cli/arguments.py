"""Small command-line values: storage options, tail's start, column lists; and UsageError.

Invariants: every malformed value raises UsageError (exit 2) with a message naming the flag;
nothing here touches storage.
"""
from __future__ import annotations


class UsageError(Exception):
    """Bad command-line usage (exit 2), found after argparse accepted the arguments."""


def parse_storage_options(items) -> dict | None:
    """['endpoint_url=http://h', 'client_kwargs.region_name=r'] -> a nested dict (None if empty).

    'true' and 'false' become booleans; every other value stays a string."""
    options: dict = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--storage-option {item!r} must look like KEY=VALUE")
        parsed = {"true": True, "false": False}.get(value.strip().lower(), value)
        *parents, leaf = key.strip().split(".")
        node = options
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UsageError(f"--storage-option {item!r}: {p!r} is already set to a value")
        if isinstance(node.get(leaf), dict):
            raise UsageError(f"--storage-option {item!r}: {leaf!r} already holds nested options")
        node[leaf] = parsed
    return options or None


def parse_start(text: str):
    """'earliest', 'latest' or 'bucket:offset,bucket:offset' -> a subscribe start."""
    if text in ("earliest", "latest"):
        return text
    start = {}
    for item in text.split(","):
        b, sep, o = item.partition(":")
        if not sep or not b.strip().isdigit() or not o.strip().isdigit():
            raise UsageError(f"--from {text!r}: use earliest, latest or bucket:offset[,bucket:offset...]")
        start[int(b)] = int(o)
    return start


def parse_columns(text: str | None) -> list[str] | None:
    return None if text is None else [c.strip() for c in text.split(",") if c.strip()]
