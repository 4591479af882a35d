"""torch.compile(fullgraph=True) traces through the ops (fake implementations) and gives the eager
bits, the C++ MoE layer (torch.classes.nvfp4_moe.MoeLayer through its fake class) included; the ops
replay correctly inside a captured CUDA graph."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

import nvfp4_moe  # noqa: E402
import nvfp4_reference as ref  # noqa: E402
from test_modules import write_moe_checkpoint  # noqa: E402

H, I, E, K_TOP = 128, 64, 8, 2


def make_layer(seed: int):
    gen = torch.Generator().manual_seed(seed)

    def prepared(n, k):
        ws = [ref.random_weight(n, k, gen) for _ in range(E)]
        return nvfp4_moe.prepare_weights(torch.stack([c for c, _ in ws]), torch.stack([s for _, s in ws])).cuda()

    return {
        "w13": prepared(2 * I, H), "w2": prepared(H, I),
        "alpha1": (torch.rand(E, 2, generator=gen) * 1e-3).cuda(), "alpha2": (torch.rand(E, 2, generator=gen) * 1e-3).cuda(),
        "g1": (torch.rand(E, generator=gen) * 100 + 100).cuda(), "g2": (torch.rand(E, generator=gen) * 100 + 100).cuda(),
    }


def moe_pipeline(hidden, logits, p):
    """The MoE forward written with the ops (W4A4), as an engine would."""
    ids, weights = nvfp4_moe.route(logits, K_TOP)
    _, off, _, _, p2s, s2t = nvfp4_moe.permute(ids, E)
    codes, scales, _ = nvfp4_moe.quantize_experts(hidden, off, p["g1"], s2t)
    h1 = nvfp4_moe.grouped_gemm_w4a4(codes, scales, off, p["w13"], 2 * I, p["alpha1"])
    codes2, scales2, _ = nvfp4_moe.silu_and_mul_quantize_experts(h1, off, p["g2"])
    h2 = nvfp4_moe.grouped_gemm_w4a4(codes2, scales2, off, p["w2"], H, p["alpha2"])
    return nvfp4_moe.combine(h2, weights, p2s)


def dense_pipeline(x, g, w, alpha):
    """Single-GEMM paths and the remaining ops, with torch ops in between (exact ones)."""
    codes, scales = nvfp4_moe.quantize(x, g)
    y4 = nvfp4_moe.gemm_w4a4(codes, scales, w, 2 * I, alpha, torch.float32)
    y16 = nvfp4_moe.gemm_w4a16(x, w, 2 * I, alpha)
    act = nvfp4_moe.silu_and_mul(y16, 10.0)
    c2, s2, g2, g2_inv = nvfp4_moe.quantize_runtime_scale(act)
    deq = nvfp4_moe.dequantize(c2, s2, g2)
    return y4 * 2.0, deq, g2_inv


def test_compile_fullgraph_moe_pipeline(seed):
    p = make_layer(seed)
    hidden = torch.randn(37, H, device="cuda").to(torch.bfloat16)
    logits = torch.randn(37, E, device="cuda")
    eager = moe_pipeline(hidden, logits, p)
    compiled = torch.compile(moe_pipeline, fullgraph=True)
    out = compiled(hidden, logits, p)
    ref.assert_bitwise(out, eager, "compiled MoE pipeline")


def test_compile_fullgraph_dense_ops(seed):
    p = make_layer(seed)
    w = p["w13"][:1]
    x = torch.randn(19, H, device="cuda").to(torch.bfloat16)
    g = torch.tensor([300.0], device="cuda")
    alpha = torch.tensor([1e-3, 2e-3], device="cuda")
    eager = dense_pipeline(x, g, w, alpha)
    out = torch.compile(dense_pipeline, fullgraph=True)(x, g, w, alpha)
    for i, (a, b) in enumerate(zip(out, eager)):
        ref.assert_bitwise(a, b, f"compiled dense output {i}")


def test_compile_fullgraph_out_variants(seed):
    x = torch.randn(40, 64, device="cuda").to(torch.bfloat16)
    g = torch.tensor([100.0], device="cuda")

    def fn(x, g, codes, scales):
        nvfp4_moe.quantize(x, g, out=(codes, scales))
        return nvfp4_moe.dequantize(codes, scales, g)

    codes, scales = nvfp4_moe.quantize(x, g)
    c2, s2 = torch.zeros_like(codes.view(torch.uint8)), torch.zeros_like(scales.view(torch.uint8))
    out = torch.compile(fn, fullgraph=True)(x, g, c2, s2)
    ref.assert_bitwise(c2, codes.view(torch.uint8), "codes written through the compiled out= op")
    ref.assert_bitwise(out, nvfp4_moe.dequantize(codes, scales, g), "dequantized")


# Inductor pickles the custom-class object when it compiles (it asks for __getstate__), and a
# MoeLayer owns device weights that are not serialized: the C++ layer traces with fullgraph=True
# under the aot_eager backend; Nvfp4MoE (the same layer from ops) compiles with inductor.
@pytest.mark.parametrize("backend", ["aot_eager"])
@pytest.mark.parametrize("mode", ["w4a4", "w4a16"])
def test_compile_fullgraph_cpp_moe_layer(tmp_path, seed, mode, backend):
    """Nvfp4MoELayer (the C++ layer as a custom-class object) and the op with out=, compiled with
    fullgraph=True around torch ops: the eager bits, and the fake class saw the layer's metadata."""
    write_moe_checkpoint(tmp_path, h=H, i=I, e=E, top_k=K_TOP, n_shared=1, calibrated=True, deepseek=True,
                         seed=seed)
    layer = nvfp4_moe.Nvfp4MoELayer(tmp_path, mode=mode, max_tokens=64)
    flat = dict(layer.layer.__obj_flatten__())
    assert flat == {"cfg_layer_index": 1, "cfg_hidden": H, "cfg_intermediate": I, "cfg_num_experts": E,
                    "cfg_top_k": K_TOP, "cfg_max_tokens": 64, "cfg_device_index": torch.cuda.current_device(),
                    "cfg_mode": mode}
    hidden = torch.randn(37, H, device="cuda").to(torch.bfloat16)
    logits = hidden.float() @ layer.router_weight.t()

    def fn(hidden, logits):
        return layer(hidden * 2, logits).float() + 1.0

    eager = fn(hidden, logits)
    compiled = torch.compile(fn, fullgraph=True, backend=backend)
    ref.assert_bitwise(compiled(hidden, logits), eager, "compiled C++ MoE layer")
    h2 = torch.randn(5, H, device="cuda").to(torch.bfloat16)  # a new token count (recompiles or dynamic)
    l2 = h2.float() @ layer.router_weight.t()
    ref.assert_bitwise(compiled(h2, l2), fn(h2, l2), "compiled C++ MoE layer, 5 tokens")

    def fn_out(hidden, logits, out):
        nvfp4_moe.moe_forward(layer.layer, hidden, logits, out=out)
        return out * 2

    out = torch.empty(37, H, device="cuda", dtype=torch.bfloat16)
    got = torch.compile(fn_out, fullgraph=True, backend=backend)(hidden, logits, out)
    want = layer(hidden, logits)
    ref.assert_bitwise(out, want, "compiled moe_forward out=")
    ref.assert_bitwise(got, want * 2, "compiled moe_forward out= (result)")

    # The fake checks run at trace time, with the C++ op's messages (a fresh function: static shapes).
    def too_many(hidden, logits):
        return layer(hidden, logits)

    with pytest.raises(Exception, match="expected at most max_tokens = 64"):
        torch.compile(too_many, fullgraph=True, backend=backend)(
            torch.zeros(65, H, device="cuda", dtype=torch.bfloat16), torch.zeros(65, E, device="cuda"))
    assert int(layer.layer.error_flags().item()) == 0


def capture(fn, *static_inputs):
    """Warm up on a side stream, then capture fn(*static_inputs) into a CUDA graph."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            fn(*static_inputs)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = fn(*static_inputs)
    return graph, static_out


def test_cuda_graph_replay_moe_pipeline(seed):
    p = make_layer(seed)
    t = 64
    hidden = torch.randn(t, H, device="cuda").to(torch.bfloat16)
    logits = torch.randn(t, E, device="cuda")
    graph, static_out = capture(lambda h, l: moe_pipeline(h, l, p), hidden, logits)
    for _ in range(3):  # new routing and new data every replay
        new_h = torch.randn(t, H, device="cuda").to(torch.bfloat16)
        new_l = torch.randn(t, E, device="cuda")
        hidden.copy_(new_h)
        logits.copy_(new_l)
        graph.replay()
        torch.cuda.synchronize()
        ref.assert_bitwise(static_out, moe_pipeline(new_h, new_l, p), "graph replay")


def test_cuda_graph_replay_out_variants(seed):
    p = make_layer(seed)
    x = torch.randn(33, H, device="cuda").to(torch.bfloat16)
    g = torch.tensor([200.0], device="cuda")
    codes, scales = nvfp4_moe.quantize(x, g)
    out = torch.empty(33, 2 * I, device="cuda", dtype=torch.bfloat16)
    alpha = torch.tensor([1e-3, 1e-3], device="cuda")

    def fn(x):
        nvfp4_moe.quantize(x, g, out=(codes, scales))
        nvfp4_moe.gemm_w4a4(codes, scales, p["w13"][:1], 2 * I, alpha, out=out)

    graph, _ = capture(fn, x)
    new_x = torch.randn(33, H, device="cuda").to(torch.bfloat16)
    x.copy_(new_x)
    graph.replay()
    torch.cuda.synchronize()
    c, s = nvfp4_moe.quantize(new_x, g)
    ref.assert_bitwise(out, nvfp4_moe.gemm_w4a4(c, s, p["w13"][:1], 2 * I, alpha), "graph replay (out=)")
