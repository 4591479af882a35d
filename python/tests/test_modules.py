"""Nvfp4Linear / Nvfp4MoE / Nvfp4MoELayer loaded from synthetic ModelOpt NVFP4 checkpoints, against
pure-torch references (dequantize -> fp32 matmul on the same quantized data), torch.compile and
CUDA graphs, and the C++ layer against the op-composed module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

import nvfp4_moe  # noqa: E402
import nvfp4_reference as ref  # noqa: E402
from nvfp4_moe import safetensors_io  # noqa: E402


# ------------------------------------------------------------ synthetic ModelOpt checkpoints
def quantize_linear(w: torch.Tensor, input_amax: float | None) -> dict[str, torch.Tensor]:
    """ModelOpt tensors of one linear: W [N, K] float -> weight, weight_scale (row-major),
    weight_scale_2 = 1/gB and (when calibrated) input_scale = 1/gA = input_amax / 2688."""
    g_b = ref.global_scale(w)
    codes, scales = ref.quantize(w, g_b)
    t = {"weight": codes, "weight_scale": scales.view(torch.float8_e4m3fn),
         "weight_scale_2": (1.0 / g_b).reshape(())}
    if input_amax is not None:
        t["input_scale"] = torch.tensor(input_amax / 2688.0, dtype=torch.float32)
    return t


def linear_ref(t: dict[str, torch.Tensor], x: torch.Tensor, mode: str, g_a: torch.Tensor | None) -> torch.Tensor:
    """y = x W^T with the weight dequantized; W4A4 quantizes x with g_a first (float32 result)."""
    w = ref.dequantize(t["weight"], t["weight_scale"].view(torch.uint8), 1.0 / t["weight_scale_2"])
    xf = x.detach().float().cpu()
    if mode == "w4a4":
        c, s = ref.quantize(x, g_a)
        xf = ref.dequantize(c, s, g_a)
    return xf @ w.t()


def rel_err(out: torch.Tensor, want: torch.Tensor) -> float:
    out = out.detach().float().cpu()
    return float((out - want).norm() / want.norm().clamp_min(1e-30))


def write_moe_checkpoint(path: Path, *, h: int, i: int, e: int, top_k: int, n_shared: int, calibrated: bool,
                         deepseek: bool, layer: int = 1, seed: int = 0) -> dict:
    """A two-layer checkpoint whose layer `layer` is an NVFP4 MoE layer; returns the float weights."""
    gen = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    weights = {"experts": [], "shared": None}
    pre = f"model.layers.{layer}.mlp"

    def add(prefix, n, k, in_amax):
        w = torch.randn(n, k, generator=gen) * 0.05
        t = quantize_linear(w, in_amax if calibrated else None)
        for name, v in t.items():
            tensors[f"{prefix}.{name}"] = v
        return t

    for x in range(e):
        weights["experts"].append(tuple(add(f"{pre}.experts.{x}.{p}", n, k, amax) for p, n, k, amax in
                                        (("gate_proj", i, h, 8.0), ("up_proj", i, h, 9.0), ("down_proj", h, i, 24.0))))
    if n_shared:
        si = n_shared * i
        weights["shared"] = tuple(add(f"{pre}.shared_experts.{p}", n, k, amax) for p, n, k, amax in
                                  (("gate_proj", si, h, 8.0), ("up_proj", si, h, 8.0), ("down_proj", h, si, 24.0)))
    router = (torch.randn(e, h, generator=gen) * 0.1).to(torch.bfloat16)
    tensors[f"{pre}.gate.weight"] = router
    weights["router"] = router.float()
    if deepseek:
        bias = torch.randn(e, generator=gen) * 0.05
        tensors[f"{pre}.gate.e_score_correction_bias"] = bias
        weights["bias"] = bias
    # a dense layer 0 tensor, so the loader has to find the MoE layer
    tensors["model.layers.0.mlp.down_proj.weight"] = torch.zeros(h, 2 * h, dtype=torch.bfloat16)
    safetensors_io.save_file(tensors, path / "model.safetensors")
    cfg = {"model_type": "deepseek_v3" if deepseek else "qwen3_moe", "hidden_size": h, "num_hidden_layers": 2,
           "moe_intermediate_size": i, "num_experts_per_tok": top_k,
           "quantization_config": {"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16}}
    if deepseek:
        cfg.update({"n_routed_experts": e, "n_shared_experts": n_shared, "scoring_func": "sigmoid",
                    "norm_topk_prob": True, "n_group": 4, "topk_group": 2, "routed_scaling_factor": 2.5,
                    "first_k_dense_replace": 1, "topk_method": "noaux_tc"})
    else:
        cfg.update({"num_experts": e, "norm_topk_prob": True, "decoder_sparse_step": 1, "mlp_only_layers": [0]})
    (path / "config.json").write_text(json.dumps(cfg))
    return weights


def moe_reference(weights: dict, hidden: torch.Tensor, logits: torch.Tensor, cfg, mode: str) -> torch.Tensor:
    """The MoE layer in float32 torch on the quantized data (steps of ref/moe.h), unrounded output."""
    ids, w = ref.route(logits, cfg.top_k, cfg.scoring, cfg.renormalize, cfg.n_group, cfg.topk_group,
                       cfg.routed_scaling_factor, weights.get("bias"))
    t = hidden.shape[0]

    def mlp(tensors, x):
        g, u, d = tensors
        g_a1 = 1.0 / torch.maximum(g["input_scale"], u["input_scale"]) if mode == "w4a4" else None
        h1 = torch.cat([linear_ref(g, x, mode, g_a1), linear_ref(u, x, mode, g_a1)], dim=1).to(torch.bfloat16)
        a2 = ref.silu_and_mul(h1)
        g_a2 = 1.0 / d["input_scale"] if mode == "w4a4" else None
        return linear_ref(d, a2, mode, g_a2).to(torch.bfloat16).float()

    out = torch.zeros(t, hidden.shape[1])
    for j in range(cfg.top_k):
        for x in range(cfg.num_experts):
            rows = (ids[:, j] == x).nonzero().flatten()
            if rows.numel():
                out[rows] += w[rows, j:j + 1] * mlp(weights["experts"][x], hidden.cpu()[rows])
    if weights["shared"] is not None:
        out += mlp(weights["shared"], hidden.cpu())
    return out


# ------------------------------------------------------------ Nvfp4Linear
@pytest.mark.parametrize("mode,calibrated", [("w4a4", True), ("w4a4", False), ("w4a16", True)])
def test_linear_from_checkpoint(seed, tmp_path, mode, calibrated):
    gen = torch.Generator().manual_seed(seed)
    n, k = 96, 256
    t = quantize_linear(torch.randn(n, k, generator=gen) * 0.1, 5.0 if calibrated else None)
    bias = torch.randn(n, generator=gen).to(torch.bfloat16)
    safetensors_io.save_file({f"proj.{name}": v for name, v in t.items()} | {"proj.bias": bias},
                             tmp_path / "linear.safetensors")
    layer = nvfp4_moe.Nvfp4Linear.from_checkpoint(tmp_path / "linear.safetensors", "proj", mode=mode)
    x = (torch.randn(2, 7, k, generator=gen) * 1.5).to(torch.bfloat16).cuda()
    y = layer(x)
    assert y.dtype == torch.bfloat16 and tuple(y.shape) == (2, 7, n)
    x2 = x.reshape(-1, k)
    g_a = (1.0 / t["input_scale"]) if calibrated else ref.global_scale(x2)
    want = linear_ref(t, x2, mode, g_a) + bias.float()
    assert rel_err(y.reshape(-1, n), want) < 4e-3
    compiled = torch.compile(layer, fullgraph=True)(x)
    if mode == "w4a4" and not calibrated:
        # alpha = 1/(g gB) is computed by an inductor kernel there, whose division may differ in the last bit
        torch.testing.assert_close(compiled, y, rtol=2 ** -7, atol=1e-3)
    else:
        assert torch.equal(compiled, y)


def test_safetensors_roundtrip_and_errors(tmp_path):
    t = {"a": torch.arange(6, dtype=torch.int32).reshape(2, 3), "b": torch.tensor(1.5),
         "c": torch.randn(4, 8).to(torch.float8_e4m3fn), "d": torch.randn(3).to(torch.bfloat16)}
    safetensors_io.save_file(t, tmp_path / "t.safetensors", {"format": "pt"})
    back = safetensors_io.load_file(tmp_path / "t.safetensors")
    for name, v in t.items():
        assert back[name].dtype == v.dtype and torch.equal(back[name].view(torch.uint8), v.view(torch.uint8)) \
            if v.dim() else torch.equal(back[name], v)
    raw = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[:-3])
    with pytest.raises(ValueError, match="data_offsets"):
        safetensors_io.SafetensorsFile(tmp_path / "cut.safetensors")


# ------------------------------------------------------------ Nvfp4MoE / Nvfp4MoELayer
MOE_CASES = {
    "deepseek_w4a4": dict(h=256, i=128, e=16, top_k=4, n_shared=1, calibrated=True, deepseek=True, mode="w4a4"),
    "qwen_w4a4": dict(h=128, i=64, e=8, top_k=2, n_shared=0, calibrated=True, deepseek=False, mode="w4a4"),
    "qwen_w4a16": dict(h=128, i=96, e=8, top_k=2, n_shared=0, calibrated=False, deepseek=False, mode="w4a16"),
}


@pytest.fixture(params=sorted(MOE_CASES))
def moe_case(request, tmp_path, seed):
    case = dict(MOE_CASES[request.param])
    mode = case.pop("mode")
    weights = write_moe_checkpoint(tmp_path, seed=seed, **case)
    return tmp_path, mode, weights


@pytest.mark.parametrize("t", [1, 19, 200])
def test_moe_module_matches_reference(moe_case, t):
    path, mode, weights = moe_case
    moe = nvfp4_moe.Nvfp4MoE.from_checkpoint(path, mode=mode)
    assert moe.layer == 1
    cfg = moe.config
    hidden = torch.randn(t, cfg.hidden_size, device="cuda").to(torch.bfloat16)
    logits = hidden.float() @ moe.router_weight.t()
    out = moe(hidden)
    assert out.dtype == torch.bfloat16 and tuple(out.shape) == (t, cfg.hidden_size)
    want = moe_reference(weights, hidden, logits, cfg, mode)
    assert rel_err(out, want) < 1.5e-2


def test_moe_compile_and_cuda_graph(moe_case):
    path, mode, _ = moe_case
    moe = nvfp4_moe.Nvfp4MoE.from_checkpoint(path, mode=mode)
    h = moe.config.hidden_size
    hidden = torch.randn(48, h, device="cuda").to(torch.bfloat16)
    logits = hidden.float() @ moe.router_weight.t()  # given explicitly: one matmul for every path
    eager = moe(hidden, logits)
    assert torch.equal(torch.compile(moe, fullgraph=True)(hidden, logits), eager)
    static_h, static_l = hidden.clone(), logits.clone()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        moe(static_h, static_l)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = moe(static_h, static_l)
    new_h = torch.randn(48, h, device="cuda").to(torch.bfloat16)
    new_l = new_h.float() @ moe.router_weight.t()
    static_h.copy_(new_h)
    static_l.copy_(new_l)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(static_out, moe(new_h, new_l))


@pytest.mark.parametrize("t", [0, 1, 37, 200])
def test_cpp_layer_equals_composed_module(moe_case, t):
    """The C++ GPU layer (cuda/moe.h) and the op-composed module run the same kernels in the same
    order on the same weights: identical bits."""
    path, mode, _ = moe_case
    moe = nvfp4_moe.Nvfp4MoE.from_checkpoint(path, mode=mode)
    layer = nvfp4_moe.Nvfp4MoELayer(path, mode=mode, max_tokens=256)
    assert layer.layer.layer_index() == 1 and layer.layer.num_experts() == moe.config.num_experts
    hidden = torch.randn(t, moe.config.hidden_size, device="cuda").to(torch.bfloat16)
    logits = hidden.float() @ moe.router_weight.t()
    got = layer(hidden, logits)
    want = moe(hidden, logits)
    ref.assert_bitwise(got, want, "C++ MoE layer vs composed ops")
    assert int(layer.layer.error_flags().item()) == 0


def test_cpp_layer_cuda_graph_and_errors(tmp_path, seed):
    write_moe_checkpoint(tmp_path, h=128, i=64, e=8, top_k=2, n_shared=1, calibrated=False, deepseek=True, seed=seed)
    with pytest.raises(RuntimeError, match="W4A4 needs them"):
        nvfp4_moe.Nvfp4MoELayer(tmp_path, mode="w4a4", max_tokens=64)
    with pytest.raises(ValueError, match="no input_scale"):
        nvfp4_moe.Nvfp4MoE.from_checkpoint(tmp_path, mode="w4a4")
    layer = nvfp4_moe.Nvfp4MoELayer(tmp_path, mode="w4a16", max_tokens=64)
    hidden = torch.randn(64, 128, device="cuda").to(torch.bfloat16)
    logits = torch.randn(64, 8, device="cuda")
    with pytest.raises(RuntimeError, match="expected at most max_tokens = 64"):
        layer(torch.randn(65, 128, device="cuda").to(torch.bfloat16), torch.randn(65, 8, device="cuda"))
    with pytest.raises(RuntimeError, match="router_logits: expected shape"):
        layer(hidden, logits[:, :4].contiguous())
    eager = layer(hidden, logits)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        layer(hidden, logits)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = layer(hidden, logits)
    new_h, new_l = torch.randn_like(hidden), torch.randn_like(logits)
    hidden.copy_(new_h)
    logits.copy_(new_l)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(static_out, layer(new_h, new_l))
    assert not torch.equal(static_out, eager)


def test_readme_example_runs():
    """The README's first example is runnable as written (python/README.md)."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(compile(code, "README.md example", "exec"), scope)
    assert float(((scope["y"].float() - scope["ref"]).norm() / scope["ref"].norm())) < 0.2
    assert torch.equal(scope["y_compiled"], scope["y"]) or \
        torch.allclose(scope["y_compiled"].float(), scope["y"].float(), rtol=2 ** -7, atol=1e-3)
