"""Unpickling restricted to named globals: what a fan-out worker accepts from a request.

A pickle can name any importable callable and call it while it loads, so unpickling a request
is running its sender's code. A worker that unpickles with `loads(data, allowed)` resolves only
the (module, name) pairs in `allowed`: a function sent by value (cloudpickle's reconstructors), `os.system` or any other
global raises UntrustedPayloadError. And it sets state only on instances of allowed classes,
from a dict: a pickle's BUILD on a class or function would `setattr` on it, changing it for
every later task of a warm worker.

Invariants: every global a pickle names goes through `find_class` (extension codes included, and
persistent ids are refused by the base class), so the allowed pairs are everything a payload can
call; BUILD touches only the instance it builds; data opcodes (numbers, strings, bytes,
containers) need no global. The pure-Python unpickler is used because only it lets BUILD be
checked; tasks are a few KiB, so its speed does not matter.
"""
from __future__ import annotations

import io
import pickle

from flussfs.errors import FlussError


class UntrustedPayloadError(FlussError):
    """A payload names a global its receiver does not accept; nothing of it ran."""


class _Unpickler(pickle._Unpickler):
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, data: bytes, allowed: frozenset):
        super().__init__(io.BytesIO(data))
        self._allowed = allowed
        self._classes = ()  # the allowed globals that are classes, as find_class returns them

    def find_class(self, module: str, name: str):
        if (module, name) not in self._allowed:
            raise UntrustedPayloadError(f"the payload names {module}.{name}, which this worker does "
                                        f"not accept (it accepts {_names(self._allowed)})")
        found = super().find_class(module, name)
        if isinstance(found, type):
            self._classes += (found,)
        return found

    def load_build(self):
        state, target = self.stack[-1], self.stack[-2]
        if isinstance(target, type) or not isinstance(target, self._classes) \
                or not isinstance(state, dict):
            raise UntrustedPayloadError(f"the payload sets state on {type(target).__name__} "
                                        f"{target!r:.80}: only instances of the accepted classes, from a dict")
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build


def loads(data: bytes, allowed: frozenset) -> object:
    """The object pickled in `data`, built from the globals in `allowed` only."""
    return _Unpickler(data, allowed).load()


def _names(allowed: frozenset) -> str:
    return ", ".join(sorted(f"{m}.{n}" for m, n in allowed))
