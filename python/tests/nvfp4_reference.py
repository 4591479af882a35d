"""Pure-torch references of the NVFP4 format and the MoE steps (docs/FORMAT.md), written from the
spec, independent of the extension. All arithmetic is float32 on the CPU, one rounding per
operation in the spec's order, so quantization results can be compared bit for bit.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

E2M1_VALUES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                            -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=torch.float32)
R6 = torch.tensor(1.0 / 6.0, dtype=torch.float32)


def round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def padded_cols(k: int) -> int:
    return round_up(k // 16, 4)


def e2m1_encode(v: torch.Tensor) -> torch.Tensor:
    """float32 -> e2m1 codes (uint8): nearest, ties to the even code, saturating; sign kept on zero;
    NaN -> +6 (code 7)."""
    a = v.abs()
    code = ((a > 0.25).int() + (a >= 0.75).int() + (a > 1.25).int() + (a >= 1.75).int()
            + (a > 2.5).int() + (a >= 3.5).int() + (a > 5.0).int())
    nan = torch.isnan(v)
    code = torch.where(nan, torch.full_like(code, 7), code)
    code = code | ((torch.signbit(v) & ~nan).int() << 3)
    return code.to(torch.uint8)


def global_scale(x: torch.Tensor) -> torch.Tensor:
    """g = 448 * 6 / amax(|x|) as float32 (1 for an all-zero tensor)."""
    amax = x.float().abs().max().cpu() if x.numel() else torch.tensor(0.0)
    g = torch.tensor(2688.0, dtype=torch.float32) / amax
    return g if bool(torch.isfinite(g)) and g > 0 else torch.tensor(1.0)


def quantize(x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [R, K] -> (codes uint8 [R, K/2], row-major scale bytes uint8 [R, K/16]) with one global
    scale g, or one per row when g has R entries."""
    rows, k = x.shape
    xf = x.detach().float().cpu().reshape(rows, k // 16, 16)
    g = g.detach().float().cpu().reshape(-1, 1)  # [1 or R, 1]
    amax = xf.abs().amax(dim=-1)
    s = (g * (amax * R6)).clamp(max=448.0).to(torch.float8_e4m3fn)  # satfinite (torch's cast would give NaN)
    sf = s.float()
    m = torch.where(sf == 0, torch.zeros_like(sf), 1.0 / (sf * (1.0 / g)))
    q = e2m1_encode(xf * m.unsqueeze(-1)).reshape(rows, k)
    codes = q[:, 0::2] | (q[:, 1::2] << 4)
    return codes, s.view(torch.uint8)


def decode_codes(codes: torch.Tensor) -> torch.Tensor:
    """uint8 [R, K/2] -> e2m1 values float32 [R, K]."""
    c = codes.detach().cpu().view(torch.uint8)
    q = torch.stack([c & 15, c >> 4], dim=-1).reshape(c.shape[0], -1).long()
    return E2M1_VALUES[q]


def dequantize(codes: torch.Tensor, scales_rm: torch.Tensor, g: Optional[torch.Tensor] = None) -> torch.Tensor:
    """e2m1 * e4m3 (/ g): float32 [R, K]; without g the block-scaled values (what a GEMM multiplies)."""
    vals = decode_codes(codes)
    s = scales_rm.detach().cpu().view(torch.float8_e4m3fn).float().repeat_interleave(16, dim=1)
    out = vals * s
    return out if g is None else out / g.detach().float().cpu().reshape(-1, 1)


def swizzled_offsets(scale_rows: torch.Tensor, k: int) -> torch.Tensor:
    """Byte offsets [len(scale_rows), K/16] of scales (r, c) in the 128x4 swizzled layout."""
    pc = padded_cols(k)
    r = scale_rows.long().reshape(-1, 1)
    c = torch.arange(k // 16).reshape(1, -1)
    tile = (r // 128) * (pc // 4) + c // 4
    return tile * 512 + (r % 32) * 16 + ((r % 128) // 32) * 4 + (c % 4)


def unswizzle(scales: torch.Tensor, scale_rows: torch.Tensor, k: int) -> torch.Tensor:
    """Row-major scale bytes uint8 [len(scale_rows), K/16] read from a swizzled buffer."""
    flat = scales.detach().cpu().contiguous().view(torch.uint8).reshape(-1)
    return flat[swizzled_offsets(scale_rows, k)]


def expert_scale_offsets(off: Sequence[int]) -> list[int]:
    sf = [0]
    for e in range(len(off) - 1):
        sf.append(sf[-1] + round_up(off[e + 1] - off[e], 128))
    return sf


def expert_scale_rows(off: Sequence[int], rows: int) -> torch.Tensor:
    """The scale row of every data row i < off[E] in a per-expert buffer."""
    sf = expert_scale_offsets(off)
    out = []
    for e in range(len(off) - 1):
        out += [sf[e] + i for i in range(off[e + 1] - off[e])]
    return torch.tensor(out[:rows], dtype=torch.long)


def silu_and_mul(x: torch.Tensor, limit: Optional[float] = None) -> torch.Tensor:
    """silu(gate) * up in float32 (v / (1 + exp(-v))), rounded to x's dtype."""
    gate, up = x.detach().float().cpu().chunk(2, dim=-1)
    if limit is not None:
        gate = gate.clamp(max=limit)
        up = up.clamp(-limit, limit)
    return ((gate / (1.0 + torch.exp(-gate))) * up).to(x.dtype)


def route(logits: torch.Tensor, top_k: int, scoring: str = "softmax", renormalize: bool = True, n_group: int = 1,
          topk_group: int = 1, scale: float = 1.0,
          bias: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k routing (ref/routing.h): ids [T, k] int32, weights [T, k] float32; ties to the lower id."""
    l = logits.detach().float().cpu()
    t, e = l.shape
    if scoring == "softmax":
        p = torch.softmax(l, dim=-1)
        sel = p
    else:
        p = torch.sigmoid(l)
        sel = p + (bias.detach().float().cpu() if bias is not None else 0.0)
        if n_group > 1:
            grouped = sel.reshape(t, n_group, e // n_group)
            top2 = grouped.sort(dim=-1, descending=True, stable=True).values[..., :2].sum(-1)
            keep = top2.sort(dim=-1, descending=True, stable=True).indices[:, :topk_group]
            mask = torch.zeros(t, n_group, dtype=torch.bool)
            mask.scatter_(1, keep, True)
            sel = sel.masked_fill(~mask.repeat_interleave(e // n_group, dim=1), float("-inf"))
    ids = sel.sort(dim=-1, descending=True, stable=True).indices[:, :top_k]
    w = p.gather(1, ids)
    if renormalize:
        w = w / (w.sum(-1, keepdim=True) + (1e-20 if scoring == "sigmoid" else 0.0))
    return ids.to(torch.int32), w * torch.tensor(scale, dtype=torch.float32)


def permute(ids: torch.Tensor, num_experts: int) -> dict[str, torch.Tensor]:
    """Expert-sorted layout: an expert's rows in (token, slot) order."""
    flat = ids.detach().cpu().reshape(-1).long()
    k = ids.shape[1]
    s2p = torch.sort(flat, stable=True).indices
    p2s = torch.empty_like(s2p)
    p2s[s2p] = torch.arange(flat.numel())
    counts = torch.bincount(flat, minlength=num_experts)
    off = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    return {"counts": counts, "off": off, "sf_off": torch.tensor(expert_scale_offsets(off.tolist())),
            "sorted_to_pair": s2p, "pair_to_sorted": p2s, "sorted_to_token": s2p // k}


def combine(rows: torch.Tensor, weights: torch.Tensor, pair_to_sorted: torch.Tensor,
            shared: Optional[torch.Tensor] = None) -> torch.Tensor:
    """sum_j w[t, j] * rows[p2s[t k + j]] (+ shared[t]) in float32, j ascending (unrounded)."""
    r = rows.detach().float().cpu()
    w = weights.detach().float().cpu()
    t, k = w.shape
    p2s = pair_to_sorted.detach().cpu().long()[: t * k].reshape(t, k)
    acc = torch.zeros(t, r.shape[1])
    for j in range(k):
        acc = acc + w[:, j:j + 1] * r[p2s[:, j]]
    if shared is not None:
        acc = acc + shared.detach().float().cpu()
    return acc


def random_weight(n: int, k: int, gen: Optional[torch.Generator] = None,
                  pow2_scales: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """A random NVFP4 weight as ModelOpt stores it: codes uint8 [n, k/2], scales e4m3 bytes [n, k/16]
    (positive, finite; powers of two 2^-2..2^2 when pow2_scales, for exact GEMM checks)."""
    codes = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8, generator=gen)
    if pow2_scales:
        scales = (torch.randint(5, 10, (n, k // 16), generator=gen) << 3).to(torch.uint8)  # 2^(E-7)
    else:
        scales = torch.randint(0x20, 0x50, (n, k // 16), dtype=torch.uint8, generator=gen)  # 2^-4 .. 2^2.9
    return codes, scales


def first_mismatch(actual: torch.Tensor, expected: torch.Tensor) -> str:
    """'N mismatches, first at (i, j): got a, expected b' for bitwise comparisons."""
    a, e = actual.detach().cpu(), expected.detach().cpu()
    if a.dtype != e.dtype or a.dtype in (torch.float8_e4m3fn, torch.float4_e2m1fn_x2):
        a, e = a.view(torch.uint8), e.view(torch.uint8)
    bad = (a != e) if not a.is_floating_point() else ~((a == e) | (torch.isnan(a) & torch.isnan(e)))
    n = int(bad.sum())
    if n == 0:
        return "equal"
    idx = tuple(int(i) for i in bad.nonzero()[0])
    return f"{n} mismatches of {bad.numel()}, first at {idx}: got {a[idx].item()}, expected {e[idx].item()}"


def assert_bitwise(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert tuple(actual.shape) == tuple(expected.shape), f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    msg = first_mismatch(actual, expected)
    assert msg == "equal", f"{what}: {msg}"
