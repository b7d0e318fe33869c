"""One way to say a size in a message: bytes below 100 kB (MB would round to nothing), MB below
1 GB, GB above."""

from __future__ import annotations

__all__ = ["size_text"]


def size_text(n: float) -> str:
    """``512 bytes``, ``3.2 MB``, ``1,234.5 MB`` is never said: ``1.23 GB``."""
    if 0 < n < 100_000:
        return f"{int(n):,} bytes"
    if n < 1e9:
        return f"{n / 1e6:,.1f} MB"
    return f"{n / 1e9:,.2f} GB"
