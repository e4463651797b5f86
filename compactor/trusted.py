"""Unpickling restricted to named globals: what a fan-out worker accepts from a request.

A pickle can name any importable callable and call it while it loads, so unpickling a request
is running its sender's code. A worker that unpickles with `loads(data, allowed)` resolves only
the (module, name) pairs in `allowed`: a function sent by value (cloudpickle's reconstructors),
`os.system` or any other global raises UntrustedPayloadError before anything of the payload runs.

Invariants: every global a pickle names goes through `find_class` (extension codes included, and
persistent ids are refused by the base class), so the allowed pairs are everything a payload can
call; data opcodes (numbers, strings, bytes, containers) need no global.
"""
from __future__ import annotations

import io
import pickle

from flussfs.errors import FlussError


class UntrustedPayloadError(FlussError):
    """A payload names a global its receiver does not accept; nothing of it ran."""


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, allowed: frozenset):
        super().__init__(io.BytesIO(data))
        self._allowed = allowed

    def find_class(self, module: str, name: str):
        if (module, name) not in self._allowed:
            raise UntrustedPayloadError(f"the payload names {module}.{name}, which this worker does "
                                        f"not accept (it accepts {_names(self._allowed)})")
        return super().find_class(module, name)


def loads(data: bytes, allowed: frozenset) -> object:
    """The object pickled in `data`, built from the globals in `allowed` only."""
    return _Unpickler(data, allowed).load()


def _names(allowed: frozenset) -> str:
    return ", ".join(sorted(f"{m}.{n}" for m, n in allowed))
