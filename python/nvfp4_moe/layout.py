"""Sizes of the NVFP4 buffers (the Python twin of ``nvfp4moe/format/swizzle.h``).

Codes of an ``[R, K]`` tensor are ``[R, K/2]`` bytes; its block scales are stored padded to
``[roundup(R, 128), roundup(K/16, 4)]`` in 128x4 tiles (the cuBLASLt / CUTLASS swizzle). Per-expert
scales put expert ``e`` at scale row ``sf_off[e]`` with every expert padded to 128 rows, so a
buffer for ``M`` rows over ``E`` experts needs ``expert_scale_rows_capacity(M, E)`` rows.
"""

from __future__ import annotations

BLOCK_SIZE = 16
SCALE_TILE_ROWS = 128
SCALE_TILE_COLS = 4

# Bits of the error_flags word the per-expert quantizers OR in (cuda/quantize.h).
QUANT_ERROR_BAD_OFFSETS = 1  # offsets malformed: outputs were written as zero
QUANT_ERROR_BAD_GATHER = 2   # a gather entry was out of range: that row quantized as zero


def round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def scale_cols(k: int) -> int:
    """Scale columns of a K-wide matrix (one per 16 elements)."""
    return k // BLOCK_SIZE


def padded_scale_cols(k: int) -> int:
    return round_up(k // BLOCK_SIZE, SCALE_TILE_COLS)


def padded_scale_rows(rows: int) -> int:
    return round_up(rows, SCALE_TILE_ROWS)


def expert_scale_rows_capacity(rows: int, num_experts: int) -> int:
    """Scale rows a per-expert buffer needs for ``rows`` rows over ``num_experts`` experts."""
    return round_up(rows + 127 * num_experts, SCALE_TILE_ROWS)


def _swizzled_offsets(rows: int, k: int, device) -> "torch.Tensor":
    import torch

    pc = padded_scale_cols(k)
    r = torch.arange(rows, device=device).reshape(-1, 1)
    c = torch.arange(k // BLOCK_SIZE, device=device).reshape(1, -1)
    tile = (r // 128) * (pc // 4) + c // 4
    return tile * 512 + (r % 32) * 16 + ((r % 128) // 32) * 4 + (c % 4)


def unswizzle_scales(scales: "torch.Tensor", rows: int, k: int) -> "torch.Tensor":
    """Swizzled scales (as ``quantize`` returns them) -> row-major ``[rows, K/16]`` float8_e4m3fn, the
    layout ModelOpt checkpoints store as ``weight_scale``."""
    import torch

    flat = scales.contiguous().view(torch.uint8).reshape(-1)
    return flat[_swizzled_offsets(rows, k, scales.device)].view(torch.float8_e4m3fn)


def swizzle_scales(row_major: "torch.Tensor") -> "torch.Tensor":
    """Row-major ``[rows, K/16]`` scales -> the swizzled ``[roundup(rows,128), roundup(K/16,4)]``
    float8_e4m3fn buffer (padding zero), the inverse of :func:`unswizzle_scales`."""
    import torch

    rows, k = row_major.shape[0], row_major.shape[1] * BLOCK_SIZE
    out = torch.zeros(padded_scale_rows(rows) * padded_scale_cols(k), dtype=torch.uint8, device=row_major.device)
    out[_swizzled_offsets(rows, k, row_major.device).reshape(-1)] = row_major.contiguous().view(torch.uint8).reshape(-1)
    return out.reshape(padded_scale_rows(rows), padded_scale_cols(k)).view(torch.float8_e4m3fn)
