"""Routing, permutation and combine ops against pure-torch references."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

import nvfp4_moe  # noqa: E402
import nvfp4_reference as ref  # noqa: E402


@pytest.mark.parametrize("logits_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("t,e,k,renorm", [(1, 8, 2, True), (19, 64, 6, False), (300, 128, 8, True)])
def test_route_softmax(seed, t, e, k, renorm, logits_dtype):
    logits = torch.randn(t, e, device="cuda").to(logits_dtype)
    ids, w = nvfp4_moe.route(logits, k, "softmax", renorm, routed_scaling_factor=1.5)
    want_ids, want_w = ref.route(logits, k, "softmax", renorm, scale=1.5)
    ref.assert_bitwise(ids.cpu(), want_ids, "ids")
    torch.testing.assert_close(w.cpu(), want_w, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("t,e,k,n_group,topk_group", [(7, 64, 4, 8, 3), (130, 256, 8, 8, 4), (5, 16, 2, 1, 1)])
def test_route_sigmoid_grouped(seed, t, e, k, n_group, topk_group):
    logits = torch.randn(t, e, device="cuda")
    bias = (torch.randn(e) * 0.1).cuda()
    ids, w = nvfp4_moe.route(logits, k, "sigmoid", True, n_group, topk_group, 2.5, correction_bias=bias)
    want_ids, want_w = ref.route(logits, k, "sigmoid", True, n_group, topk_group, 2.5, bias)
    ref.assert_bitwise(ids.cpu(), want_ids, "ids")
    torch.testing.assert_close(w.cpu(), want_w, rtol=1e-5, atol=1e-7)


def test_route_out_and_empty(seed):
    logits = torch.randn(11, 32, device="cuda")
    ids, w = nvfp4_moe.route(logits, 4)
    ids2 = torch.empty_like(ids)
    w2 = torch.empty_like(w)
    nvfp4_moe.route(logits, 4, out=(ids2, w2))
    assert torch.equal(ids2, ids) and torch.equal(w2, w)
    e_ids, e_w = nvfp4_moe.route(logits[:0], 4)
    assert tuple(e_ids.shape) == (0, 4) and tuple(e_w.shape) == (0, 4)


@pytest.mark.parametrize("t,e,k", [(0, 8, 2), (1, 4, 4), (19, 16, 3), (333, 64, 8)])
def test_permute(seed, t, e, k):
    # random ids, distinct per token; expert 1 left empty when there are enough others
    pool = torch.tensor([x for x in range(e) if x != 1 or e - 1 < k])
    ids = torch.stack([pool[torch.randperm(len(pool))[:k]] for _ in range(t)]) if t else torch.empty(0, k)
    ids = ids.to(torch.int32)
    got = nvfp4_moe.permute(ids.cuda(), e)
    want = ref.permute(ids, e)
    names = ["counts", "off", "sf_off", "sorted_to_pair", "pair_to_sorted", "sorted_to_token"]
    for name, g in zip(names, got):
        assert g.dtype == torch.int32
        ref.assert_bitwise(g.cpu().long(), want[name].long(), name)


def test_permute_out_with_capacity(seed):
    t, e, k, cap = 10, 8, 2, 32
    ids = torch.stack([torch.randperm(e)[:k] for _ in range(t)]).to(torch.int32).cuda()
    bufs = [torch.empty(e, dtype=torch.int32, device="cuda"), torch.empty(e + 1, dtype=torch.int32, device="cuda"),
            torch.empty(e + 1, dtype=torch.int32, device="cuda")] + \
           [torch.full((cap * k,), -5, dtype=torch.int32, device="cuda") for _ in range(3)]
    nvfp4_moe.permute(ids, e, out=bufs)
    want = nvfp4_moe.permute(ids, e)
    for i, (b, w) in enumerate(zip(bufs, want)):
        ref.assert_bitwise(b[: w.numel()], w, f"output {i}")


@pytest.mark.parametrize("dtype,out_dtype", [(torch.bfloat16, None), (torch.float16, torch.float32),
                                             (torch.bfloat16, torch.float16)])
@pytest.mark.parametrize("with_shared", [False, True])
def test_combine(seed, dtype, out_dtype, with_shared):
    t, e, k, h = 37, 16, 4, 264
    ids = torch.stack([torch.randperm(e)[:k] for _ in range(t)]).to(torch.int32).cuda()
    _, _, _, _, p2s, _ = nvfp4_moe.permute(ids, e)
    rows = torch.randn(t * k, h, device="cuda").to(dtype)
    w = torch.rand(t, k, device="cuda")
    shared = torch.randn(t, h, device="cuda").to(dtype) if with_shared else None
    out = nvfp4_moe.combine(rows, w, p2s, shared, out_dtype)
    assert out.dtype == (out_dtype or dtype) and tuple(out.shape) == (t, h)
    want = ref.combine(rows, w, p2s, shared)
    # float32 sum in a fixed order; the GPU may fuse multiply-adds: one ulp of the output type
    rtol = 2 ** -7 if out.dtype == torch.bfloat16 else 2 ** -9 if out.dtype == torch.float16 else 1e-6
    torch.testing.assert_close(out.cpu().float(), want, rtol=rtol, atol=1e-5)
    again = nvfp4_moe.combine(rows, w, p2s, shared, out_dtype)
    assert torch.equal(out, again), "combine must be deterministic"
    buf = torch.empty_like(out)
    nvfp4_moe.combine(rows, w, p2s, shared, out=buf)
    assert torch.equal(buf, out)


def test_routing_bad_inputs():
    logits = torch.randn(4, 16, device="cuda")
    with pytest.raises(RuntimeError, match="scoring: expected \"softmax\" or \"sigmoid\""):
        nvfp4_moe.route(logits, 2, "relu")
    with pytest.raises(RuntimeError, match="top_k: expected 1..E = 16"):
        nvfp4_moe.route(logits, 17)
    with pytest.raises(RuntimeError, match="correction_bias: only used with scoring=\"sigmoid\""):
        nvfp4_moe.route(logits, 2, correction_bias=torch.zeros(16, device="cuda"))
    with pytest.raises(RuntimeError, match="correction_bias: expected shape \\[16\\]"):
        nvfp4_moe.route(logits, 2, "sigmoid", correction_bias=torch.zeros(8, device="cuda"))
    with pytest.raises(RuntimeError, match="logits: expected dtype torch.float32 or torch.bfloat16"):
        nvfp4_moe.route(logits.half(), 2)
    ids = torch.zeros(4, 2, dtype=torch.int32, device="cuda")
    with pytest.raises(RuntimeError, match="ids: expected dtype"):
        nvfp4_moe.permute(ids.long(), 16)
    with pytest.raises(RuntimeError, match="ids: expected \\[T, k\\] with 1 <= k <= num_experts"):
        nvfp4_moe.permute(ids, 1)
    rows = torch.zeros(8, 64, dtype=torch.bfloat16, device="cuda")
    p2s = torch.arange(8, dtype=torch.int32, device="cuda")
    with pytest.raises(RuntimeError, match="rows: expected >= T k = 12"):
        nvfp4_moe.combine(rows, torch.ones(4, 3, device="cuda"), p2s)
    with pytest.raises(RuntimeError, match="shared: expected shape"):
        nvfp4_moe.combine(rows, torch.ones(4, 2, device="cuda"), p2s, rows[:3].contiguous())
    with pytest.raises(RuntimeError, match="weights: expected dtype"):
        nvfp4_moe.combine(rows, torch.ones(4, 2, device="cuda", dtype=torch.float64), p2s)
