"""``torch.nn`` modules over the nvfp4_moe ops: an NVFP4 linear layer and an NVFP4 MoE layer, both
loaded from ModelOpt NVFP4 checkpoints (safetensors).

ModelOpt stores one NVFP4 linear ``W [N, K]`` as ``<prefix>.weight`` (uint8 [N, K/2]),
``.weight_scale`` (float8_e4m3fn [N, K/16], row-major), ``.weight_scale_2`` (float32, ``1/gB``) and,
when calibrated, ``.input_scale`` (float32, ``1/gA``). Scalars follow the C++ loader's float32
arithmetic exactly (``gB = 1/weight_scale_2``, ``gA = 1/input_scale``, ``alpha = 1/(gA*gB)``), so the
modules compute what the library's CPU model computes.

Both modules are torch.compile(fullgraph=True)-traceable and CUDA-graph capturable: every step is
an op with a fake implementation, and no step reads a device value on the host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Union

import torch
from torch import nn

from . import ops
from .config import MoeConfig
from .safetensors_io import Checkpoint

Mode = Literal["w4a4", "w4a16"]
CheckpointLike = Union[str, Path, Checkpoint]


def _f32(x: Union[float, torch.Tensor]) -> torch.Tensor:
    """A float32 CPU scalar (so that scale arithmetic rounds like the C++ float code)."""
    if isinstance(x, torch.Tensor):
        if x.numel() != 1:
            raise ValueError(f"expected a scalar scale, got shape {tuple(x.shape)}")
        return x.detach().to("cpu", torch.float32).reshape(())
    return torch.tensor(x, dtype=torch.float32)


def _checkpoint(ckpt: CheckpointLike) -> Checkpoint:
    return ckpt if isinstance(ckpt, Checkpoint) else Checkpoint(ckpt)


def _device(device: Optional[Union[str, torch.device]]) -> torch.device:
    if device is None:
        return torch.device("cuda", torch.cuda.current_device())
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"nvfp4_moe modules run on CUDA devices, got {device}")
    return device


def _check_mode(mode: str) -> None:
    if mode not in ("w4a4", "w4a16"):
        raise ValueError(f"mode: expected 'w4a4' or 'w4a16', got {mode!r}")


class _LinearTensors:
    """The ModelOpt tensors of one NVFP4 linear, read from a checkpoint and checked."""

    def __init__(self, ckpt: Checkpoint, prefix: str):
        self.prefix = prefix
        self.weight = ckpt.get(prefix + ".weight")
        self.weight_scale = ckpt.get(prefix + ".weight_scale")
        self.weight_scale_2 = _f32(ckpt.get(prefix + ".weight_scale_2"))
        s = ckpt.get_optional(prefix + ".input_scale")
        self.input_scale = None if s is None else _f32(s)
        if self.weight.dtype != torch.uint8 or self.weight.dim() != 2:
            raise ValueError(f"{prefix}.weight: expected uint8 [N, K/2], got {self.weight.dtype} "
                             f"{tuple(self.weight.shape)}")
        n, k = self.weight.shape[0], self.weight.shape[1] * 2
        if self.weight_scale.dtype not in (torch.float8_e4m3fn, torch.uint8) or \
                tuple(self.weight_scale.shape) != (n, k // 16):
            raise ValueError(f"{prefix}.weight_scale: expected float8_e4m3fn [{n}, {k // 16}], got "
                             f"{self.weight_scale.dtype} {tuple(self.weight_scale.shape)}")
        for name, v in (("weight_scale_2", self.weight_scale_2), ("input_scale", self.input_scale)):
            if v is not None and not (torch.isfinite(v) and v > 0):
                raise ValueError(f"{prefix}.{name}: expected a finite positive scale, got {float(v)}")
        self.n, self.k = n, k
        self.bias = ckpt.get_optional(prefix + ".bias")


class Nvfp4Linear(nn.Module):
    """``y = x @ W^T (+ bias)`` with an NVFP4 weight ``W [out_features, in_features]``.

    Modes: ``"w4a4"`` quantizes the activations to NVFP4 (with the checkpoint's ``input_scale``,
    or, when the checkpoint has none, a global scale computed on the device from ``amax(|x|)``);
    ``"w4a16"`` multiplies bf16 activations directly. Input ``[..., in_features]`` (bf16; fp16 in
    W4A4), output of the same leading shape and dtype.
    """

    def __init__(self, weight: torch.Tensor, weight_scale: torch.Tensor, weight_scale_2: Union[float, torch.Tensor],
                 input_scale: Optional[Union[float, torch.Tensor]] = None, bias: Optional[torch.Tensor] = None,
                 mode: Mode = "w4a4", device: Optional[Union[str, torch.device]] = None):
        super().__init__()
        _check_mode(mode)
        dev = _device(device)
        self.out_features, self.in_features = weight.shape[0], weight.shape[1] * 2
        self.mode = mode
        self.static_input_scale = mode == "w4a4" and input_scale is not None
        g_b = 1.0 / _f32(weight_scale_2)
        self.register_buffer("weight", ops.prepare_weights(weight.view(torch.uint8).cpu(),
                                                           weight_scale.view(torch.uint8).cpu()).to(dev))
        if mode == "w4a16":
            alpha = 1.0 / g_b
        elif self.static_input_scale:
            g_a = 1.0 / _f32(input_scale)
            alpha = 1.0 / (g_a * g_b)
            self.register_buffer("input_global_scale", g_a.reshape(1).to(dev))
        else:
            alpha = torch.ones((), dtype=torch.float32)  # computed per call from the runtime scale
        self.register_buffer("weight_global_scale", g_b.reshape(1).to(dev))
        self.register_buffer("alpha", alpha.reshape(1).repeat(2).to(dev))
        self.register_buffer("bias", None if bias is None else bias.to(dev, torch.bfloat16))

    @classmethod
    def from_checkpoint(cls, ckpt: CheckpointLike, prefix: str, mode: Mode = "w4a4",
                        device: Optional[Union[str, torch.device]] = None) -> "Nvfp4Linear":
        """Load ``<prefix>.{weight, weight_scale, weight_scale_2, input_scale, bias}``."""
        t = _LinearTensors(_checkpoint(ckpt), prefix)
        return cls(t.weight, t.weight_scale, t.weight_scale_2, t.input_scale, t.bias, mode, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features).contiguous()
        n = self.out_features
        if self.mode == "w4a16":
            y = ops.gemm_w4a16(x2, self.weight, n, self.alpha)
        elif self.static_input_scale:
            codes, scales = ops.quantize(x2, self.input_global_scale)
            y = ops.gemm_w4a4(codes, scales, self.weight, n, self.alpha)
        else:
            codes, scales, g, _ = ops.quantize_runtime_scale(x2)
            alpha = (1.0 / (g * self.weight_global_scale)).repeat(2)
            y = ops.gemm_w4a4(codes, scales, self.weight, n, alpha)
        if self.bias is not None:
            y = y + self.bias
        return y.to(x.dtype).reshape(*lead, n)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, mode={self.mode}"


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([t.view(torch.uint8) for t in tensors])


def _gate_up_down(ckpt: Checkpoint, prefix: str) -> tuple[_LinearTensors, _LinearTensors, _LinearTensors]:
    return (_LinearTensors(ckpt, prefix + ".gate_proj"), _LinearTensors(ckpt, prefix + ".up_proj"),
            _LinearTensors(ckpt, prefix + ".down_proj"))


class _GatedMlpScales:
    """Global scales and GEMM alphas of one gated MLP (gate|up fused into W13, then down), in the
    C++ loader's float32 arithmetic (model/moe_layer_loader.h, ref/moe.h)."""

    def __init__(self, g: _LinearTensors, u: _LinearTensors, d: _LinearTensors, mode: str):
        gb_lo, gb_hi, gb_2 = 1.0 / g.weight_scale_2, 1.0 / u.weight_scale_2, 1.0 / d.weight_scale_2
        if mode == "w4a16":
            self.alpha1 = torch.stack([1.0 / gb_lo, 1.0 / gb_hi])
            self.alpha2 = torch.stack([1.0 / gb_2, 1.0 / gb_2])
            self.g_a1 = self.g_a2 = torch.ones((), dtype=torch.float32)
            return
        if g.input_scale is None or u.input_scale is None or d.input_scale is None:
            raise ValueError(f"{g.prefix[:-len('.gate_proj')]}: no input_scale (uncalibrated checkpoint); "
                             "W4A4 needs one per linear: use mode='w4a16'")
        # GEMM1 reads one quantized copy of the rows: the larger of the two calibrations.
        self.g_a1 = 1.0 / torch.maximum(g.input_scale, u.input_scale)
        self.g_a2 = 1.0 / d.input_scale
        self.alpha1 = torch.stack([1.0 / (self.g_a1 * gb_lo), 1.0 / (self.g_a1 * gb_hi)])
        self.alpha2 = torch.stack([1.0 / (self.g_a2 * gb_2), 1.0 / (self.g_a2 * gb_2)])


class Nvfp4MoE(nn.Module):
    """One NVFP4 MoE layer (routed experts + optional DeepSeek-style shared expert), composed of the
    nvfp4_moe ops in the order of the library's GPU layer (cuda/moe.h):

    route -> permute -> [W4A4: gather + per-expert quantize | W4A16: gather] -> grouped GEMM1
    (gate|up) -> [fused SiLU*Mul + per-expert quantize | SiLU*Mul] -> grouped GEMM2 -> combine
    (+ shared expert) in float32.

    ``forward(hidden [T, H] bf16, router_logits [T, E] float32 = None) -> [T, H] bf16``; without
    logits the router weight of the checkpoint computes them (float32 matmul).
    """

    def __init__(self, config: MoeConfig, experts: list[tuple[_LinearTensors, _LinearTensors, _LinearTensors]],
                 router_weight: torch.Tensor, correction_bias: Optional[torch.Tensor] = None,
                 shared: Optional[tuple[_LinearTensors, _LinearTensors, _LinearTensors]] = None,
                 mode: Mode = "w4a4", device: Optional[Union[str, torch.device]] = None):
        super().__init__()
        _check_mode(mode)
        dev = _device(device)
        self.config, self.mode = config, mode
        h, i, e = config.hidden_size, config.intermediate_size, config.num_experts
        if len(experts) != e:
            raise ValueError(f"expected {e} experts, got {len(experts)}")
        for gate, up, down in experts:
            for t, n, k in ((gate, i, h), (up, i, h), (down, h, i)):
                if (t.n, t.k) != (n, k):
                    raise ValueError(f"{t.prefix}: expected [{n}, {k}], got [{t.n}, {t.k}]")
        if tuple(router_weight.shape) != (e, h):
            raise ValueError(f"router weight: expected [{e}, {h}], got {tuple(router_weight.shape)}")
        if correction_bias is not None and config.scoring != "sigmoid":
            raise ValueError("correction_bias is only used with sigmoid scoring")
        w13 = _stack([torch.cat([g.weight, u.weight]) for g, u, _ in experts])
        s13 = _stack([torch.cat([g.weight_scale.view(torch.uint8), u.weight_scale.view(torch.uint8)])
                      for g, u, _ in experts])
        self.register_buffer("w13", ops.prepare_weights(w13, s13).to(dev))
        self.register_buffer("w2", ops.prepare_weights(_stack([d.weight for _, _, d in experts]),
                                                       _stack([d.weight_scale for _, _, d in experts])).to(dev))
        scales = [_GatedMlpScales(g, u, d, mode) for g, u, d in experts]
        self.register_buffer("alpha1", torch.stack([s.alpha1 for s in scales]).to(dev))   # [E, 2]
        self.register_buffer("alpha2", torch.stack([s.alpha2 for s in scales]).to(dev))   # [E, 2]
        self.register_buffer("g_a1", torch.stack([s.g_a1 for s in scales]).to(dev))       # [E]
        self.register_buffer("g_a2", torch.stack([s.g_a2 for s in scales]).to(dev))       # [E]
        self.register_buffer("router_weight", router_weight.to(dev, torch.float32).contiguous())
        self.register_buffer("correction_bias",
                             None if correction_bias is None else correction_bias.to(dev, torch.float32).contiguous())
        self.has_shared = shared is not None
        if shared is not None:
            g, u, d = shared
            self.shared_inter = g.n
            sw13 = torch.cat([g.weight, u.weight]).unsqueeze(0)
            ss13 = torch.cat([g.weight_scale.view(torch.uint8), u.weight_scale.view(torch.uint8)]).unsqueeze(0)
            self.register_buffer("shared_w13", ops.prepare_weights(sw13, ss13).to(dev))
            self.register_buffer("shared_w2", ops.prepare_weights(d.weight.unsqueeze(0),
                                                                  d.weight_scale.view(torch.uint8).unsqueeze(0)).to(dev))
            s = _GatedMlpScales(g, u, d, mode)
            self.register_buffer("shared_alpha1", s.alpha1.to(dev))
            self.register_buffer("shared_alpha2", s.alpha2.to(dev))
            self.register_buffer("shared_g_a1", s.g_a1.reshape(1).to(dev))
            self.register_buffer("shared_g_a2", s.g_a2.reshape(1).to(dev))

    @classmethod
    def from_checkpoint(cls, path: Union[str, Path], layer: Optional[int] = None, mode: Mode = "w4a4",
                        device: Optional[Union[str, torch.device]] = None, layers_prefix: str = "model.layers",
                        mlp: str = "mlp", experts: str = "experts", shared_experts: str = "shared_experts",
                        router: str = "gate") -> "Nvfp4MoE":
        """Load MoE layer ``layer`` (default: the first layer with expert tensors) of a ModelOpt NVFP4
        checkpoint directory (``config.json`` + safetensors shards), with the library's naming."""
        cfg = MoeConfig.from_json(path)
        ckpt = Checkpoint(path)
        if layer is None:
            suffix = f".{mlp}.{experts}.0.gate_proj.weight"
            found = sorted(int(k[len(layers_prefix) + 1:-len(suffix)]) for k in ckpt.keys()
                           if k.startswith(layers_prefix + ".") and k.endswith(suffix)
                           and k[len(layers_prefix) + 1:-len(suffix)].isdigit())
            if not found:
                raise ValueError(f"{path}: no MoE layer ({layers_prefix}.L{suffix}) in the checkpoint")
            layer = found[0]
        prefix = f"{layers_prefix}.{layer}.{mlp}"
        ex = [_gate_up_down(ckpt, f"{prefix}.{experts}.{e}") for e in range(cfg.num_experts)]
        router_w = ckpt.get(f"{prefix}.{router}.weight")
        bias = ckpt.get_optional(f"{prefix}.{router}.e_score_correction_bias")
        shared = None
        if cfg.n_shared_experts > 0:
            shared = _gate_up_down(ckpt, f"{prefix}.{shared_experts}")
        module = cls(cfg, ex, router_w, bias, shared, mode, device)
        module.layer = layer
        return module

    def _shared_forward(self, hidden: torch.Tensor) -> torch.Tensor:
        limit = self.config.swiglu_limit
        n1, h = 2 * self.shared_inter, self.config.hidden_size
        if self.mode == "w4a16":
            h1 = ops.gemm_w4a16(hidden, self.shared_w13, n1, self.shared_alpha1)
            return ops.gemm_w4a16(ops.silu_and_mul(h1, limit), self.shared_w2, h, self.shared_alpha2)
        codes, scales = ops.quantize(hidden, self.shared_g_a1)
        h1 = ops.gemm_w4a4(codes, scales, self.shared_w13, n1, self.shared_alpha1)
        codes2, scales2 = ops.quantize(ops.silu_and_mul(h1, limit), self.shared_g_a2)
        return ops.gemm_w4a4(codes2, scales2, self.shared_w2, h, self.shared_alpha2)

    def forward(self, hidden: torch.Tensor, router_logits: Optional[torch.Tensor] = None) -> torch.Tensor:
        c = self.config
        hidden = hidden.contiguous()
        if router_logits is None:
            router_logits = hidden.float() @ self.router_weight.t()
        router_logits = router_logits.contiguous()
        ids, weights = ops.route(router_logits, c.top_k, c.scoring, c.renormalize, c.n_group, c.topk_group,
                                 c.routed_scaling_factor, self.correction_bias)
        _, off, _, _, pair_to_sorted, sorted_to_token = ops.permute(ids, c.num_experts)
        n1, h = 2 * c.intermediate_size, c.hidden_size
        if self.mode == "w4a4":
            codes, scales, _ = ops.quantize_experts(hidden, off, self.g_a1, sorted_to_token)
            h1 = ops.grouped_gemm_w4a4(codes, scales, off, self.w13, n1, self.alpha1)
            codes2, scales2, _ = ops.silu_and_mul_quantize_experts(h1, off, self.g_a2, c.swiglu_limit)
            h2 = ops.grouped_gemm_w4a4(codes2, scales2, off, self.w2, h, self.alpha2)
        else:
            rows = hidden.index_select(0, sorted_to_token.long())
            h1 = ops.grouped_gemm_w4a16(rows, off, self.w13, n1, self.alpha1)
            h2 = ops.grouped_gemm_w4a16(ops.silu_and_mul(h1, c.swiglu_limit), off, self.w2, h, self.alpha2)
        shared = self._shared_forward(hidden) if self.has_shared else None
        return ops.combine(h2, weights, pair_to_sorted, shared)


class Nvfp4MoELayer(nn.Module):
    """The library's own GPU MoE layer (C++ ``cuda::moe_forward`` through
    ``torch.classes.nvfp4_moe.MoeLayer``): weights and a workspace for ``max_tokens`` tokens in
    memory it owns, the shared expert on a side stream. Eager mode, CUDA graphs and
    torch.compile(fullgraph=True): the layer is one opaque op in the graph, traced through the fake
    class of ``MoeLayer`` (its shape metadata from ``__obj_flatten__``; see nvfp4_moe/_fake.py).
    """

    def __init__(self, path: Union[str, Path], layer: Optional[int] = None, mode: Mode = "w4a4",
                 max_tokens: int = 4096):
        super().__init__()
        _check_mode(mode)
        self.layer = torch.classes.nvfp4_moe.MoeLayer(str(path), -1 if layer is None else int(layer), mode,
                                                       int(max_tokens))
        self.register_buffer("router_weight", self.layer.router_weight().cuda())

    def forward(self, hidden: torch.Tensor, router_logits: Optional[torch.Tensor] = None) -> torch.Tensor:
        if router_logits is None:
            router_logits = hidden.float() @ self.router_weight.t()
        return ops.moe_forward(self.layer, hidden, router_logits.contiguous())
