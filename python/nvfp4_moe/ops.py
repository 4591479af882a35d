"""Typed Python entry points of the ``torch.ops.nvfp4_moe`` ops.

Conventions (docs/FORMAT.md of the C++ library):

* NVFP4 codes: ``torch.float4_e2m1fn_x2`` ``[R, K/2]`` (two e2m1 values a byte, element ``2i`` in the
  low nibble); ``torch.uint8`` views are accepted as inputs.
* Block scales: ``torch.float8_e4m3fn`` ``[roundup(R, 128), roundup(K/16, 4)]`` whose bytes are in the
  128x4 swizzled order that cuBLASLt and the CUTLASS block-scaled GEMMs read (the same layout as
  ``torch._scaled_mm``'s NVFP4 ``to_blocked`` scales); per-expert scales have
  ``expert_scale_rows_capacity(R, E)`` rows.
* Global scales: float32 *device* tensors in the encode form ``g = 448 * 6 / amax``
  (checkpoints store the decode form ``1/g``: ``input_scale``, ``weight_scale_2``).
* Every op runs on the current CUDA stream, never synchronizes, and can be captured in a CUDA
  graph. ``out=`` arguments take preallocated buffers of exactly the returned shapes and dtypes.
* Bad arguments raise ``RuntimeError`` naming the op and the argument, before any launch.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

_ops = torch.ops.nvfp4_moe


def _unpack(out: Optional[Sequence[torch.Tensor]], n: int, name: str) -> Sequence[torch.Tensor]:
    if len(out) != n:
        raise ValueError(f"nvfp4_moe.{name}: out: expected {n} tensors, got {len(out)}")
    return out


# ---------------------------------------------------------------- quantization
def quantize(x: torch.Tensor, global_scale: torch.Tensor,
             out: Optional[Sequence[torch.Tensor]] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize ``x`` [R, K] (bf16/fp16, K % 16 == 0) with a static global scale (float32 [1]).

    Returns ``(codes [R, K/2], scales [roundup(R,128), roundup(K/16,4)])``.
    """
    if out is None:
        return _ops.quantize(x, global_scale)
    codes, scales = _unpack(out, 2, "quantize")
    _ops.quantize_out(x, global_scale, codes=codes, scales=scales)
    return codes, scales


def quantize_runtime_scale(
        x: torch.Tensor, out: Optional[Sequence[torch.Tensor]] = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize ``x`` with ``g = 448*6/amax(|x|)`` computed on the device.

    Returns ``(codes, scales, g [1], 1/g [1])``; ``1/g`` is the activation factor of a W4A4 GEMM's
    alpha.
    """
    if out is None:
        return _ops.quantize_runtime_scale(x)
    codes, scales, g, g_inv = _unpack(out, 4, "quantize_runtime_scale")
    _ops.quantize_runtime_scale_out(x, codes=codes, scales=scales, global_scale=g, global_scale_inv=g_inv)
    return codes, scales, g, g_inv


def quantize_experts(
        x: torch.Tensor, expert_offsets: torch.Tensor, global_scales: torch.Tensor,
        gather: Optional[torch.Tensor] = None, out: Optional[Sequence[torch.Tensor]] = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-expert quantization: output row ``i`` (read from ``x[gather[i]]`` when given) belongs to the
    expert ``e`` with ``off[e] <= i < off[e+1]`` and uses ``global_scales[e]``.

    ``expert_offsets``: int32 [E+1] on the device; ``global_scales``: float32 [E]; ``gather``: int32 [M].
    Returns ``(codes [M, K/2], scales [expert_scale_rows_capacity(M, E), roundup(K/16,4)],
    error_flags int32 [1])``; the flags are set on the device (``layout.QUANT_ERROR_*``) when the
    offsets or the gather map are malformed (the outputs are then zeroed where affected).
    With ``out=(codes, scales, error_flags)`` the flags word is ORed into, not cleared.
    """
    if out is None:
        return _ops.quantize_experts(x, expert_offsets, global_scales, gather)
    codes, scales, flags = _unpack(out, 3, "quantize_experts")
    _ops.quantize_experts_out(x, expert_offsets, global_scales, gather, codes=codes, scales=scales,
                              error_flags=flags)
    return codes, scales, flags


def silu_and_mul(x: torch.Tensor, limit: Optional[float] = None,
                 out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``silu(gate) * up`` of ``x = [gate | up]`` [R, 2I] -> [R, I] (same dtype); optional SwiGLU clamp
    (``gate <= limit``, ``-limit <= up <= limit``)."""
    if out is None:
        return _ops.silu_and_mul(x, limit)
    _ops.silu_and_mul_out(x, limit, out=out)
    return out


def silu_and_mul_quantize_experts(
        x: torch.Tensor, expert_offsets: torch.Tensor, global_scales: torch.Tensor,
        limit: Optional[float] = None, out: Optional[Sequence[torch.Tensor]] = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused ``silu_and_mul`` (rounded to x's dtype) + ``quantize_experts`` of the [R, I] product, in
    one pass; equal bit for bit to the two ops in sequence. I % 16 == 0."""
    if out is None:
        return _ops.silu_and_mul_quantize_experts(x, expert_offsets, global_scales, limit)
    codes, scales, flags = _unpack(out, 3, "silu_and_mul_quantize_experts")
    _ops.silu_and_mul_quantize_experts_out(x, expert_offsets, global_scales, limit, codes=codes, scales=scales,
                                           error_flags=flags)
    return codes, scales, flags


def dequantize(codes: torch.Tensor, scales: torch.Tensor, global_scale: torch.Tensor,
               out_dtype: torch.dtype = torch.float32, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``e2m1 * e4m3 / g`` of a per-tensor quantized [R, K] matrix, as float32 or bfloat16."""
    if out is None:
        return _ops.dequantize(codes, scales, global_scale, out_dtype)
    _ops.dequantize_out(codes, scales, global_scale, out=out)
    return out


# ---------------------------------------------------------------- GEMM
def prepare_weights(codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """ModelOpt weight(s) -> the GEMM's prepared layout (host work; call once at load time).

    ``codes``: [N, K/2] or [E, N, K/2] (uint8 / float4_e2m1fn_x2); ``scales``: [N, K/16] or
    [E, N, K/16] row-major e4m3 (ModelOpt's ``weight_scale``, *not* swizzled). Returns uint8
    [E, bytes] on the input's device. The global scale is not part of it: pass it through alpha.
    """
    return _ops.prepare_weights(codes, scales)


def gemm_w4a16(a: torch.Tensor, weight: torch.Tensor, n: int, alpha: torch.Tensor,
               out_dtype: torch.dtype = torch.bfloat16, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out[m, :] = alpha * a[m, :] @ W^T``: a bf16 [M, K], weight from ``prepare_weights`` ([1, bytes]),
    alpha float32 [2] (first / second half of N; ``1/gB`` twice for an unfused weight)."""
    if out is None:
        return _ops.gemm_w4a16(a, weight, n, alpha, out_dtype)
    _ops.gemm_w4a16_out(a, weight, n, alpha, out=out)
    return out


def gemm_w4a4(a_codes: torch.Tensor, a_scales: torch.Tensor, weight: torch.Tensor, n: int, alpha: torch.Tensor,
              out_dtype: torch.dtype = torch.bfloat16, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """W4A4 GEMM of quantized activations (``quantize`` output) and a prepared weight;
    alpha = ``1/(gA*gB)`` per half of N."""
    if out is None:
        return _ops.gemm_w4a4(a_codes, a_scales, weight, n, alpha, out_dtype)
    _ops.gemm_w4a4_out(a_codes, a_scales, weight, n, alpha, out=out)
    return out


def grouped_gemm_w4a16(a: torch.Tensor, expert_offsets: torch.Tensor, weight: torch.Tensor, n: int,
                       alpha: torch.Tensor, out_dtype: torch.dtype = torch.bfloat16,
                       out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Grouped W4A16: rows ``[off[e], off[e+1])`` of ``a`` use expert ``e`` of ``weight`` ([E, bytes]);
    alpha float32 [E, 2]. Rows at or past ``off[E]`` are zero (or left untouched with ``out=``)."""
    if out is None:
        return _ops.grouped_gemm_w4a16(a, expert_offsets, weight, n, alpha, out_dtype)
    _ops.grouped_gemm_w4a16_out(a, expert_offsets, weight, n, alpha, out=out)
    return out


def grouped_gemm_w4a4(a_codes: torch.Tensor, a_scales: torch.Tensor, expert_offsets: torch.Tensor,
                      weight: torch.Tensor, n: int, alpha: torch.Tensor, out_dtype: torch.dtype = torch.bfloat16,
                      out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Grouped W4A4 over per-expert quantized activations (``quantize_experts`` output)."""
    if out is None:
        return _ops.grouped_gemm_w4a4(a_codes, a_scales, expert_offsets, weight, n, alpha, out_dtype)
    _ops.grouped_gemm_w4a4_out(a_codes, a_scales, expert_offsets, weight, n, alpha, out=out)
    return out


# ---------------------------------------------------------------- routing
def route(logits: torch.Tensor, top_k: int, scoring: str = "softmax", renormalize: bool = True,
          n_group: int = 1, topk_group: int = 1, routed_scaling_factor: float = 1.0,
          correction_bias: Optional[torch.Tensor] = None,
          out: Optional[Sequence[torch.Tensor]] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k routing of logits [T, E] (float32/bf16): ``"softmax"`` (Mixtral/Qwen) or ``"sigmoid"``
    (DeepSeek-V3: correction bias for selection, ``n_group``/``topk_group`` group limit).
    Returns ``(ids int32 [T, k], weights float32 [T, k])``; ties go to the lower expert id."""
    if out is None:
        return _ops.route(logits, correction_bias, top_k, scoring, renormalize, n_group, topk_group,
                          routed_scaling_factor)
    ids, weights = _unpack(out, 2, "route")
    _ops.route_out(logits, correction_bias, top_k, scoring, renormalize, n_group, topk_group,
                   routed_scaling_factor, ids=ids, weights=weights)
    return ids, weights


def permute(ids: torch.Tensor, num_experts: int, out: Optional[Sequence[torch.Tensor]] = None):
    """Expert-sorted layout of ``ids`` [T, k] (deterministic: an expert's rows in (token, slot) order).

    Returns ``(counts [E], expert_offsets [E+1], scale_offsets [E+1], sorted_to_pair [T k],
    pair_to_sorted [T k], sorted_to_token [T k])``, all int32. With ``out=`` the three maps may be
    longer than ``T k`` (a capacity; a multiple of k). An id outside ``[0, E)`` is a device error
    (the kernel traps), so validate untrusted ids first.
    """
    if out is None:
        return _ops.permute(ids, num_experts)
    counts, off, sf_off, s2p, p2s, s2t = _unpack(out, 6, "permute")
    _ops.permute_out(ids, num_experts, counts=counts, expert_offsets=off, scale_offsets=sf_off,
                     sorted_to_pair=s2p, pair_to_sorted=p2s, sorted_to_token=s2t)
    return counts, off, sf_off, s2p, p2s, s2t


def combine(rows: torch.Tensor, weights: torch.Tensor, pair_to_sorted: torch.Tensor,
            shared: Optional[torch.Tensor] = None, out_dtype: Optional[torch.dtype] = None,
            out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out[t] = sum_j weights[t, j] * rows[pair_to_sorted[t*k + j]] (+ shared[t])`` in float32, j
    ascending, rounded to ``out_dtype`` (default: rows' dtype)."""
    if out is None:
        return _ops.combine(rows, weights, pair_to_sorted, shared, out_dtype)
    _ops.combine_out(rows, weights, pair_to_sorted, shared, out=out)
    return out


def moe_forward(layer: torch.ScriptObject, hidden: torch.Tensor, router_logits: torch.Tensor,
                out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """One forward of a ``torch.classes.nvfp4_moe.MoeLayer`` (the C++ layer, cuda/moe.h): hidden bf16
    [T, H], router_logits float32 [T, E] -> bf16 [T, H]. Eager, CUDA graphs and torch.compile (the
    layer object is traced through its fake class, nvfp4_moe/_fake.py)."""
    if out is None:
        return _ops.moe_forward(layer, hidden, router_logits)
    _ops.moe_forward_out(layer, hidden, router_logits, out=out)
    return out
