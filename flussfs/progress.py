"""A one-line progress bar on stderr, for long command-line work (no dependencies).

Invariants: nothing is written unless the stream is a terminal or drawing was forced, so pipes
and logs stay clean; redraws are at most one per `redraw_interval_s`; `close()` always ends
the line it drew (and draws nothing if it never drew).
"""
from __future__ import annotations

import sys
import time

REDRAW_INTERVAL_S = 0.1
BAR_WIDTH_CHARS = 28
_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in _BYTE_UNITS:
        if abs(n) < 1024 or unit == _BYTE_UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_count(n: float) -> str:
    """1234567 -> '1,234,567'."""
    return f"{int(n):,}"


def format_duration(seconds: float) -> str:
    """0.0123 -> '12.3 ms', 75 -> '1m15s'."""
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes}m{s:02d}s"


class Progress:
    """Progress of `total` units ("bytes" or "rows"); total None draws a counter without a bar.

    Use as a context manager, or call close() at the end. Thread-compatible, not thread-safe:
    call update() from one thread.
    """

    def __init__(self, total: float | None, *, unit: str = "bytes", label: str = "",
                 stream=None, force: bool = False, redraw_interval_s: float = REDRAW_INTERVAL_S):
        if unit not in ("bytes", "rows"):
            raise ValueError(f"unit must be 'bytes' or 'rows', got {unit!r}")
        self.total, self.unit, self.label = total, unit, label
        self.stream = sys.stderr if stream is None else stream
        self.enabled = force or _is_tty(self.stream)
        self.redraw_interval_s = redraw_interval_s
        self.done = 0.0
        self._started = time.monotonic()
        self._drawn_at: float | None = None
        self._width = 0

    def update(self, n: float) -> None:
        """Add `n` units of work done."""
        self.set(self.done + n)

    def set(self, done: float) -> None:
        """Set the work done so far to `done` units."""
        self.done = done
        if not self.enabled:
            return
        now = time.monotonic()
        if self._drawn_at is None or now - self._drawn_at >= self.redraw_interval_s:
            self._draw(now)

    def close(self) -> None:
        """Draw the final state and end the line (only if something was drawn)."""
        if self.enabled and self._drawn_at is not None:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
        self.enabled = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def render(self, now: float | None = None) -> str:
        """The line as it would be drawn now (without the carriage return)."""
        elapsed = max(1e-9, (time.monotonic() if now is None else now) - self._started)
        fmt = format_bytes if self.unit == "bytes" else format_count
        rate = self.done / elapsed
        parts = [self.label] if self.label else []
        if self.total:
            fraction = min(1.0, self.done / self.total)
            filled = int(fraction * BAR_WIDTH_CHARS)
            parts.append("[" + "#" * filled + "." * (BAR_WIDTH_CHARS - filled) + "]")
            parts.append(f"{fraction * 100:5.1f}%")
            parts.append(f"{fmt(self.done)}/{fmt(self.total)}")
        else:
            parts.append(fmt(self.done))
        parts.append(f"{fmt(rate)}/s" if self.unit == "bytes" else f"{fmt(rate)} rows/s")
        if self.total and 0 < self.done < self.total:
            eta_s = int((self.total - self.done) / rate) + 1
            parts.append(f"eta {eta_s}s" if eta_s < 60 else f"eta {eta_s // 60}m{eta_s % 60:02d}s")
        return " ".join(parts)

    def _draw(self, now: float) -> None:
        line = self.render(now)
        # Pad with spaces so a shorter line fully covers the longer one drawn before it.
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = max(self._width, len(line))
        self._drawn_at = now


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or file-like without isatty
        return False
