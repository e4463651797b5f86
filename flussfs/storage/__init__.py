"""Object stores: the protocol, three backends, and the wrappers around them."""
from __future__ import annotations

import os
import threading

from ..errors import InvalidInputError
from .base import LIST_PAGE_KEYS_MAX, ObjectInfo, PutOutcome, Store
from .local import LocalStore
from .memory import MemoryStore

__all__ = ["LIST_PAGE_KEYS_MAX", "ObjectInfo", "PutOutcome", "Store", "LocalStore", "MemoryStore",
           "open_store", "table_name"]

_memory_stores: dict[str, MemoryStore] = {}
_memory_lock = threading.Lock()


def open_store(uri: str, storage_options: dict | None = None) -> Store:
    """The store holding the table at `uri`: a local path, file://, s3:// (s3a://) or memory://."""
    if not isinstance(uri, str) or not uri:
        raise InvalidInputError(f"table URI must be a non-empty string, got {uri!r}")
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme in ("", "file"):
        path = uri[len("file://"):] if scheme else uri
        return LocalStore(os.path.expanduser(path))
    if scheme in ("s3", "s3a"):
        from .s3 import S3Store
        return S3Store("s3://" + uri.split("://", 1)[1], storage_options)
    if scheme == "memory":
        with _memory_lock:
            return _memory_stores.setdefault(uri.rstrip("/"), MemoryStore(uri.rstrip("/")))
    raise InvalidInputError(f"unsupported table URI scheme {scheme!r} in {uri}")


def table_name(uri: str) -> str:
    """The last path component of a table URI, as error messages name tables."""
    return uri.rstrip("/").rsplit("/", 1)[-1]
