"""Counter-based uniforms: u = U(seed, sound id, step), the same on every device and batch.

Generation draws one uniform per (sound, step). Making it a pure function of those three
integers means a sound's audio does not depend on which other sounds share its batch, on the
batch size, on the GPU it ran on, or on whether the run was interrupted and resumed.

The hash is three chained rounds of a 32-bit integer finaliser (the "lowbias32" constants of
Chris Wellons' hash-prospector, bias ~0.17). Torch has no unsigned 32-bit arithmetic on every
device, so values live in int64 lanes holding [0, 2^32) and every multiplication is split into
16-bit halves: no product exceeds 2^49, so nothing ever overflows. The top 24 bits give a float32
uniform in [0, 1) exactly.
"""

from __future__ import annotations

import torch

MASK32 = 0xFFFFFFFF
_C1 = 0x7FEB352D
_C2 = 0x846CA68B
_SEED_SALT = 0x9E3779B9
_STEP_SALT = 0x85EBCA6B


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2^32 for x in [0, 2^32) without int64 overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & MASK32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A bijection of [0, 2^32) with strong avalanche (int64 tensor in, int64 tensor out)."""
    x = x ^ (x >> 16)
    x = _mul32(x, _C1)
    x = x ^ (x >> 15)
    x = _mul32(x, _C2)
    return x ^ (x >> 16)


def sound_keys(seed: int, sound_ids: torch.Tensor) -> torch.Tensor:
    """Per-sound 32-bit keys (int64 [B]) from the run seed and each sound's global id."""
    ids = sound_ids.to(torch.int64)
    seed_key = mix32(torch.tensor((seed ^ _SEED_SALT) & MASK32, dtype=torch.int64, device=ids.device))
    lo = mix32(seed_key ^ (ids & MASK32))
    return mix32(lo ^ ((ids >> 32) & MASK32))


def uniform(keys: torch.Tensor, step: int | torch.Tensor) -> torch.Tensor:
    """float32 [B] in [0, 1): the draw of each sound (by key) at sample ``step``."""
    if not isinstance(step, torch.Tensor):
        step = torch.tensor(step, dtype=torch.int64, device=keys.device)
    h = mix32(keys ^ mix32((step & MASK32) ^ _STEP_SALT))
    h = mix32(h ^ ((step >> 32) & MASK32))
    return (h >> 8).to(torch.float32) * (1.0 / (1 << 24))
