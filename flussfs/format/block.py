"""The block container every flussfs object uses (format_spec/spec-v1.md, "Block container").

    MAGIC (8 bytes) | body (column chunks) | footer (UTF-8 JSON) | footer length (u32 LE)
    | footer CRC-32 (u32 LE) | MAGIC (8 bytes)

Invariants: both magics present; the footer's CRC-32 (zlib's, ISO-HDLC) matches; each body chunk
is described in the footer with its absolute offset, length and CRC-32, and is checked when read.
"""
from __future__ import annotations

import json
import struct
import zlib

from ..errors import CorruptObjectError

MAGIC = b"FLUSSFS1"
BODY_OFFSET = len(MAGIC)
TRAILER = struct.Struct("<II")
TRAILER_BYTES = TRAILER.size + len(MAGIC)
FORMAT_VERSION = 1


def crc32(data) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def encode(footer: dict, body: bytes = b"") -> bytes:
    """An object whose footer is `footer` (chunk offsets in it already absolute) after `body`."""
    meta = json.dumps(footer, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    return b"".join((MAGIC, body, meta, TRAILER.pack(len(meta), crc32(meta)), MAGIC))


def decode_footer(data: bytes, name: str) -> dict:
    """The footer of a whole object, after checking magics, length and CRC."""
    if len(data) < BODY_OFFSET + TRAILER_BYTES or data[:BODY_OFFSET] != MAGIC:
        raise CorruptObjectError(f"{name}: not a flussfs object or truncated ({len(data)} bytes)")
    return decode_tail(data, len(data), name)


def decode_object(data: bytes, name: str, kind: str, what: str) -> dict:
    """The footer of a whole object that must be of `kind` (`what` names it in messages)."""
    footer = decode_footer(data, name)
    if footer.get("kind") != kind:
        raise CorruptObjectError(f"{name}: expected {what}, found {footer.get('kind')!r}")
    return footer


def decode_tail(tail: bytes, object_size: int, name: str) -> dict:
    """The footer from the last bytes of an object (at least the footer and trailer)."""
    if len(tail) < TRAILER_BYTES or tail[-len(MAGIC):] != MAGIC:
        raise CorruptObjectError(f"{name}: trailer magic missing (truncated or not a flussfs object)")
    meta_len, meta_crc = TRAILER.unpack_from(tail, len(tail) - TRAILER_BYTES)
    if meta_len + TRAILER_BYTES > len(tail) or meta_len + TRAILER_BYTES + BODY_OFFSET > object_size:
        raise CorruptObjectError(f"{name}: footer length {meta_len} does not fit the object")
    meta = tail[len(tail) - TRAILER_BYTES - meta_len: len(tail) - TRAILER_BYTES]
    if crc32(meta) != meta_crc:
        raise CorruptObjectError(f"{name}: footer checksum mismatch")
    try:
        footer = json.loads(meta)
    except ValueError as e:
        raise CorruptObjectError(f"{name}: footer is not JSON: {e}") from None
    if not isinstance(footer, dict) or footer.get("format_version") != FORMAT_VERSION:
        raise CorruptObjectError(f"{name}: unsupported format_version {footer.get('format_version')!r}"
                                 if isinstance(footer, dict) else f"{name}: footer is not an object")
    return footer


def check_chunk(chunk: bytes, descriptor: dict, name: str) -> bytes:
    """`chunk` itself, after checking its length and CRC against its footer descriptor."""
    if len(chunk) != descriptor["length"] or crc32(chunk) != descriptor["crc32"]:
        raise CorruptObjectError(f"{name}: chunk at offset {descriptor['offset']} failed its checksum")
    return chunk
