"""Fake (meta) implementations of the nvfp4_moe ops, so that torch.compile(fullgraph=True) traces
through them as opaque calls. Each mirrors the output shapes and dtypes of the C++ op exactly
(csrc/*_ops.cpp); the *_out ops mutate their buffers and return nothing.

Not traceable: ``prepare_weights`` (host work at load time) and ``moe_forward`` (takes a
``torch.classes.nvfp4_moe.MoeLayer`` object); call them outside compiled regions.
"""

from __future__ import annotations

import torch

from .layout import expert_scale_rows_capacity, padded_scale_cols, padded_scale_rows

FP4 = torch.float4_e2m1fn_x2
FP8 = torch.float8_e4m3fn


def _nvfp4(x: torch.Tensor, rows: int, k: int, scale_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    codes = x.new_empty((rows, k // 2), dtype=FP4)
    scales = x.new_empty((scale_rows, padded_scale_cols(k)), dtype=FP8)
    return codes, scales


def _none(*args, **kwargs) -> None:
    return None


def register() -> None:
    """Register every fake implementation (idempotent per process: called once on import)."""
    lib = "nvfp4_moe::"

    @torch.library.register_fake(lib + "quantize")
    def _(x, global_scale):
        return _nvfp4(x, x.shape[0], x.shape[1], padded_scale_rows(x.shape[0]))

    @torch.library.register_fake(lib + "quantize_runtime_scale")
    def _(x):
        codes, scales = _nvfp4(x, x.shape[0], x.shape[1], padded_scale_rows(x.shape[0]))
        g = x.new_empty((1,), dtype=torch.float32)
        return codes, scales, g, x.new_empty((1,), dtype=torch.float32)

    @torch.library.register_fake(lib + "quantize_experts")
    def _(x, expert_offsets, global_scales, gather=None):
        rows = gather.shape[0] if gather is not None else x.shape[0]
        e = expert_offsets.shape[0] - 1
        codes, scales = _nvfp4(x, rows, x.shape[1], expert_scale_rows_capacity(rows, e))
        return codes, scales, x.new_empty((1,), dtype=torch.int32)

    @torch.library.register_fake(lib + "silu_and_mul")
    def _(x, limit=None):
        return x.new_empty((x.shape[0], x.shape[1] // 2))

    @torch.library.register_fake(lib + "silu_and_mul_quantize_experts")
    def _(x, expert_offsets, global_scales, limit=None):
        rows, inter = x.shape[0], x.shape[1] // 2
        e = expert_offsets.shape[0] - 1
        codes, scales = _nvfp4(x, rows, inter, expert_scale_rows_capacity(rows, e))
        return codes, scales, x.new_empty((1,), dtype=torch.int32)

    @torch.library.register_fake(lib + "dequantize")
    def _(codes, scales, global_scale, out_dtype=None):
        return codes.new_empty((codes.shape[0], codes.shape[1] * 2), dtype=out_dtype or torch.float32)

    @torch.library.register_fake(lib + "gemm_w4a16")
    def _(a, weight, n, alpha, out_dtype=None):
        return a.new_empty((a.shape[0], n), dtype=out_dtype or torch.bfloat16)

    @torch.library.register_fake(lib + "gemm_w4a4")
    def _(a_codes, a_scales, weight, n, alpha, out_dtype=None):
        return a_codes.new_empty((a_codes.shape[0], n), dtype=out_dtype or torch.bfloat16)

    @torch.library.register_fake(lib + "grouped_gemm_w4a16")
    def _(a, expert_offsets, weight, n, alpha, out_dtype=None):
        return a.new_empty((a.shape[0], n), dtype=out_dtype or torch.bfloat16)

    @torch.library.register_fake(lib + "grouped_gemm_w4a4")
    def _(a_codes, a_scales, expert_offsets, weight, n, alpha, out_dtype=None):
        return a_codes.new_empty((a_codes.shape[0], n), dtype=out_dtype or torch.bfloat16)

    @torch.library.register_fake(lib + "route")
    def _(logits, correction_bias, top_k, scoring="softmax", renormalize=True, n_group=1, topk_group=1,
          routed_scaling_factor=1.0):
        t = logits.shape[0]
        return (logits.new_empty((t, top_k), dtype=torch.int32),
                logits.new_empty((t, top_k), dtype=torch.float32))

    @torch.library.register_fake(lib + "permute")
    def _(ids, num_experts):
        rows = ids.shape[0] * ids.shape[1]

        def i32(n):
            return ids.new_empty((n,), dtype=torch.int32)

        return i32(num_experts), i32(num_experts + 1), i32(num_experts + 1), i32(rows), i32(rows), i32(rows)

    @torch.library.register_fake(lib + "combine")
    def _(rows, weights, pair_to_sorted, shared=None, out_dtype=None):
        return rows.new_empty((weights.shape[0], rows.shape[1]), dtype=out_dtype or rows.dtype)

    for name in ("quantize_out", "quantize_runtime_scale_out", "quantize_experts_out", "silu_and_mul_out",
                 "silu_and_mul_quantize_experts_out", "dequantize_out", "gemm_w4a16_out", "gemm_w4a4_out",
                 "grouped_gemm_w4a16_out", "grouped_gemm_w4a4_out", "route_out", "permute_out", "combine_out"):
        torch.library.register_fake(lib + name)(_none)
