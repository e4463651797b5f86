"""Pure encode/decode of every object flussfs writes; no I/O here (format_spec/spec-v1.md)."""
