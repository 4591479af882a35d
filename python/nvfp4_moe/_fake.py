"""Fake (meta) implementations of the nvfp4_moe ops, so that torch.compile(fullgraph=True) traces
through them as opaque calls. Each mirrors the output shapes and dtypes of the C++ op exactly
(csrc/*_ops.cpp); the *_out ops mutate their buffers and return nothing.

``moe_forward`` takes a ``torch.classes.nvfp4_moe.MoeLayer`` object: torch.compile turns it into a
``FakeMoeLayer`` (below) built from the metadata the C++ class returns from ``__obj_flatten__``
(PyTorch's custom-class protocol for torch.compile), and the compiled graph calls the real layer.

Not traceable: ``prepare_weights`` (host work at load time); call it outside compiled regions.
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


class FakeMoeLayer:
    """The fake twin of ``torch.classes.nvfp4_moe.MoeLayer`` (csrc/moe_layer.h): its shape metadata
    only, and methods with the C++ methods' schemas that give outputs of the right shape."""

    NAMES = ("layer_index", "hidden", "intermediate", "num_experts", "top_k", "max_tokens", "device_index",
             "mode")
    # The C++ __obj_flatten__ names: torch.compile reads each back as an attribute of this
    # class, so they carry a prefix that keeps them apart from the methods of the same name.
    FIELDS = tuple("cfg_" + n for n in NAMES)

    def __init__(self, **fields):
        self.meta = {name: fields["cfg_" + name] for name in self.NAMES}
        for field, value in fields.items():
            setattr(self, field, value)

    @classmethod
    def __obj_unflatten__(cls, flat) -> "FakeMoeLayer":
        """flat: the C++ ``__obj_flatten__`` result, ((name, value), ...) with the names of FIELDS."""
        values = dict(flat)
        if set(values) != set(cls.FIELDS):
            raise RuntimeError(f"nvfp4_moe.MoeLayer.__obj_flatten__: expected fields {cls.FIELDS}, "
                               f"got {tuple(values)}")
        return cls(**values)

    def forward(self, hidden, router_logits):
        return _moe_forward_meta(self, hidden, router_logits)

    def forward_out(self, hidden, router_logits, out):
        _moe_forward_meta(self, hidden, router_logits, out)

    def router_weight(self):
        return torch.empty((self.meta["num_experts"], self.meta["hidden"]), dtype=torch.float32)

    def error_flags(self):
        return torch.empty((1,), dtype=torch.int32, device=torch.device("cuda", self.meta["device_index"]))

    def layer_index(self):
        return self.meta["layer_index"]

    def hidden_size(self):
        return self.meta["hidden"]

    def intermediate_size(self):
        return self.meta["intermediate"]

    def num_experts(self):
        return self.meta["num_experts"]

    def top_k(self):
        return self.meta["top_k"]

    def max_tokens(self):
        return self.meta["max_tokens"]

    def mode(self):
        return self.meta["mode"]

    def device_index(self):
        return self.meta["device_index"]


def _layer_meta(layer) -> dict:
    """The metadata of a MoeLayer as a fake op sees it: a FakeScriptObject wrapping a FakeMoeLayer
    (torch.compile / FakeTensorMode), or the real ScriptObject (meta tensors in eager)."""
    from torch._library.fake_class_registry import FakeScriptObject

    if isinstance(layer, FakeScriptObject):
        layer = layer.wrapped_obj
    if not isinstance(layer, FakeMoeLayer):
        layer = FakeMoeLayer.__obj_unflatten__(layer.__obj_flatten__())
    return layer.meta


def _moe_forward_meta(layer, hidden, router_logits, out=None) -> torch.Tensor:
    """The checks of MoeLayer::forward_out (csrc/moe_ops.cpp) that depend only on metadata, with its
    messages; returns out, or a new bf16 [T, H] like hidden."""
    m = _layer_meta(layer)
    op = "nvfp4_moe.moe_forward"
    where = torch.device("cuda", m["device_index"])
    torch._check(hidden.device == where, lambda: f"{op}: hidden: expected a tensor on {where} (where the layer "
                                                 f"was loaded), got one on {hidden.device}")
    torch._check(hidden.dtype == torch.bfloat16, lambda: f"{op}: hidden: expected bfloat16, got {hidden.dtype}")
    torch._check(hidden.dim() == 2, lambda: f"{op}: hidden: expected a 2-D tensor, got {hidden.dim()}-D")
    t = hidden.shape[0]
    torch._check(hidden.shape[1] == m["hidden"],
                 lambda: f"{op}: hidden: expected [T, {m['hidden']}], got shape {tuple(hidden.shape)}")
    torch._check(t <= m["max_tokens"], lambda: f"{op}: hidden: expected at most max_tokens = {m['max_tokens']} "
                                               f"rows (the workspace's size), got {t}")
    torch._check(router_logits.dtype == torch.float32,
                 lambda: f"{op}: router_logits: expected float32, got {router_logits.dtype}")
    torch._check(router_logits.dim() == 2, lambda: f"{op}: router_logits: expected [T, E], got shape "
                                                   f"{tuple(router_logits.shape)}")
    for dim, want in ((0, t), (1, m["num_experts"])):
        torch._check(router_logits.shape[dim] == want,
                     lambda: f"{op}: router_logits: expected shape [{t}, {m['num_experts']}], got "
                             f"{tuple(router_logits.shape)}")
    if out is None:
        return hidden.new_empty((t, m["hidden"]), dtype=torch.bfloat16)
    torch._check(out.dtype == torch.bfloat16, lambda: f"{op}: out: expected bfloat16, got {out.dtype}")
    torch._check(out.dim() == 2, lambda: f"{op}: out: expected [{t}, {m['hidden']}], got {tuple(out.shape)}")
    for dim, want in ((0, t), (1, m["hidden"])):
        torch._check(out.shape[dim] == want,
                     lambda: f"{op}: out: expected [{t}, {m['hidden']}], got {tuple(out.shape)}")
    return out


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

    torch._library.register_fake_class(lib + "MoeLayer")(FakeMoeLayer)

    @torch.library.register_fake(lib + "moe_forward")
    def _(layer, hidden, router_logits):
        return _moe_forward_meta(layer, hidden, router_logits)

    @torch.library.register_fake(lib + "moe_forward_out")
    def _(layer, hidden, router_logits, out):
        _moe_forward_meta(layer, hidden, router_logits, out)

    for name in ("quantize_out", "quantize_runtime_scale_out", "quantize_experts_out", "silu_and_mul_out",
                 "silu_and_mul_quantize_experts_out", "dequantize_out", "gemm_w4a16_out", "gemm_w4a4_out",
                 "grouped_gemm_w4a16_out", "grouped_gemm_w4a4_out", "route_out", "permute_out", "combine_out"):
        torch.library.register_fake(lib + name)(_none)
