"""GEMM ops against dequantize -> fp32 matmul references: an exact mode (small integer activations,
power-of-two scales and alphas: every partial sum is exact, so results must match bit for bit) and
a random mode with a tolerance scaled by |A| |W|^T; single and grouped, W4A16 and W4A4."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

import nvfp4_moe  # noqa: E402
import nvfp4_reference as ref  # noqa: E402


def make_weights(e: int, n: int, k: int, gen: torch.Generator, pow2: bool):
    ws = [ref.random_weight(n, k, gen, pow2_scales=pow2) for _ in range(e)]
    codes = torch.stack([c for c, _ in ws])
    scales = torch.stack([s for _, s in ws])
    prepared = nvfp4_moe.prepare_weights(codes, scales).cuda()
    deq = [ref.dequantize(c, s) for c, s in ws]  # float32 [n, k], no global scale
    return prepared, deq


def alpha_columns(alpha: torch.Tensor, n: int) -> torch.Tensor:
    """Per-column alpha [n] of one expert: alpha[0] for the first half of N, alpha[1] for the rest."""
    cols = torch.full((n,), float(alpha[1]))
    cols[: n // 2] = float(alpha[0])
    return cols


def assert_gemm_close(out: torch.Tensor, want: torch.Tensor, magnitude: torch.Tensor, what: str):
    """|out - want| <= 1e-4 |A||W|^T alpha (fp32 accumulation order) + one bf16 ulp when bf16."""
    tol = 1e-4 * magnitude + 1e-30
    if out.dtype == torch.bfloat16:  # plus the final rounding to bf16 (half an ulp, 2^-8 relative)
        tol = tol + want.abs() * 2 ** -8
    out = out.detach().float().cpu()
    err = (out - want).abs()
    bad = err > tol
    assert not bool(bad.any()), (f"{what}: {int(bad.sum())} of {bad.numel()} outside tolerance, first at "
                                 f"{tuple(int(i) for i in bad.nonzero()[0])}, max err {float(err.max())}")


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("m", [1, 3, 19, 128, 300])
@pytest.mark.parametrize("n,k", [(64, 128), (200, 272)])
def test_gemm_w4a16_exact(seed, m, n, k, out_dtype):
    gen = torch.Generator().manual_seed(seed)
    w, (w_deq,) = make_weights(1, n, k, gen, pow2=True)
    a = torch.randint(-3, 4, (m, k), generator=gen).to(torch.bfloat16)
    alpha = torch.tensor([0.125, 0.25])
    out = nvfp4_moe.gemm_w4a16(a.cuda(), w, n, alpha.cuda(), out_dtype)
    assert out.dtype == out_dtype and tuple(out.shape) == (m, n)
    want = (a.float() @ w_deq.t()) * alpha_columns(alpha, n)
    ref.assert_bitwise(out.cpu(), want.to(out_dtype), "W4A16 exact")
    buf = torch.empty_like(out)
    nvfp4_moe.gemm_w4a16(a.cuda(), w, n, alpha.cuda(), out=buf)
    ref.assert_bitwise(buf, out, "W4A16 out=")


@pytest.mark.parametrize("m", [1, 19, 257])
@pytest.mark.parametrize("n,k", [(128, 256), (96, 1024)])
def test_gemm_w4a4_random(seed, m, n, k):
    gen = torch.Generator().manual_seed(seed)
    w, (w_deq,) = make_weights(1, n, k, gen, pow2=False)
    x = (torch.randn(m, k, generator=gen) * 2).to(torch.bfloat16).cuda()
    g_a = ref.global_scale(x)
    g_b = torch.tensor(3.75)
    codes, scales = nvfp4_moe.quantize(x, g_a.reshape(1).cuda())
    alpha = (1.0 / (g_a * g_b)).reshape(1).repeat(2)
    out = nvfp4_moe.gemm_w4a4(codes, scales, w, n, alpha.cuda(), torch.float32)
    a_deq = ref.dequantize(codes, ref.unswizzle(scales, torch.arange(m), k))
    want = (a_deq.double() @ w_deq.double().t() * float(alpha[0])).float()
    magnitude = a_deq.abs() @ w_deq.abs().t() * float(alpha[0])
    assert_gemm_close(out, want, magnitude, "W4A4 fp32")
    out_bf16 = nvfp4_moe.gemm_w4a4(codes, scales, w, n, alpha.cuda())
    assert out_bf16.dtype == torch.bfloat16
    assert_gemm_close(out_bf16, want, magnitude, "W4A4 bf16")


def offsets_of(counts):
    off = [0]
    for c in counts:
        off.append(off[-1] + c)
    return off


@pytest.mark.parametrize("counts,extra_rows", [([3, 0, 19, 1], 5), ([0, 130, 0, 0, 2], 0), ([1], 0)])
def test_grouped_gemm_w4a16_exact(seed, counts, extra_rows):
    gen = torch.Generator().manual_seed(seed)
    e, n, k = len(counts), 96, 160
    w, deq = make_weights(e, n, k, gen, pow2=True)
    off = offsets_of(counts)
    rows = off[-1] + extra_rows
    a = torch.randint(-3, 4, (rows, k), generator=gen).to(torch.bfloat16)
    alpha = torch.tensor([[2.0 ** -(i % 3), 2.0 ** -(i % 2 + 1)] for i in range(e)])
    off_t = torch.tensor(off, dtype=torch.int32, device="cuda")
    out = nvfp4_moe.grouped_gemm_w4a16(a.cuda(), off_t, w, n, alpha.cuda(), torch.float32)
    want = torch.zeros(rows, n)
    for i in range(e):
        r = slice(off[i], off[i + 1])
        want[r] = (a[r].float() @ deq[i].t()) * alpha_columns(alpha[i], n)
    ref.assert_bitwise(out.cpu(), want, "grouped W4A16 exact")
    buf = torch.full((rows, n), 7.0, device="cuda")
    nvfp4_moe.grouped_gemm_w4a16(a.cuda(), off_t, w, n, alpha.cuda(), out=buf)
    ref.assert_bitwise(buf[: off[-1]], out[: off[-1]], "grouped W4A16 out=")
    assert bool((buf[off[-1]:] == 7.0).all()), "out= rows past off[E] must be left untouched"


@pytest.mark.parametrize("counts", [[5, 0, 140, 19], [1, 1], [0, 0, 64]])
def test_grouped_gemm_w4a4_random(seed, counts):
    gen = torch.Generator().manual_seed(seed)
    e, n, k = len(counts), 128, 192
    w, deq = make_weights(e, n, k, gen, pow2=False)
    off = offsets_of(counts)
    m = off[-1]
    x = (torch.randn(m, k, generator=gen) * 3).to(torch.bfloat16).cuda()
    g_a = torch.rand(e, generator=gen) * 200 + 10
    g_b = torch.rand(e, generator=gen) * 4 + 0.5
    off_t = torch.tensor(off, dtype=torch.int32, device="cuda")
    codes, scales, flags = nvfp4_moe.quantize_experts(x, off_t, g_a.cuda())
    assert int(flags.item()) == 0
    alpha = (1.0 / (g_a * g_b)).reshape(e, 1).repeat(1, 2)
    out = nvfp4_moe.grouped_gemm_w4a4(codes, scales, off_t, w, n, alpha.cuda(), torch.float32)
    a_deq = ref.dequantize(codes, ref.unswizzle(scales, ref.expert_scale_rows(off, m), k))
    want = torch.zeros(m, n)
    magnitude = torch.zeros(m, n)
    for i in range(e):
        r = slice(off[i], off[i + 1])
        want[r] = (a_deq[r].double() @ deq[i].double().t() * float(alpha[i, 0])).float()
        magnitude[r] = a_deq[r].abs() @ deq[i].abs().t() * float(alpha[i, 0])
    assert_gemm_close(out, want, magnitude, "grouped W4A4 fp32")


def test_prepare_weights_shapes_and_errors():
    gen = torch.Generator().manual_seed(1)
    codes, scales = ref.random_weight(32, 64, gen)
    single = nvfp4_moe.prepare_weights(codes, scales)
    batched = nvfp4_moe.prepare_weights(codes.unsqueeze(0).repeat(3, 1, 1), scales.unsqueeze(0).repeat(3, 1, 1))
    assert single.dtype == torch.uint8 and single.dim() == 2 and single.shape[0] == 1
    assert batched.shape[0] == 3 and batched.shape[1] == single.shape[1]
    assert torch.equal(batched[2], single[0])
    # fp4/fp8 views give the same bytes; CUDA inputs give a CUDA result
    same = nvfp4_moe.prepare_weights(codes.cuda().view(torch.float4_e2m1fn_x2), scales.cuda().view(torch.float8_e4m3fn))
    assert same.is_cuda and torch.equal(same.cpu(), single)
    with pytest.raises(RuntimeError, match="scales: expected row-major"):
        nvfp4_moe.prepare_weights(codes, scales[:, :2])
    bad = scales.clone()
    bad[3, 1] = 0x7F  # NaN block scale: rejected, naming the coordinate
    with pytest.raises(RuntimeError, match="NaN block scale at row 3"):
        nvfp4_moe.prepare_weights(codes, bad)


def test_gemm_bad_inputs():
    gen = torch.Generator().manual_seed(2)
    w, _ = make_weights(2, 64, 128, gen, pow2=True)
    a = torch.ones(4, 128, dtype=torch.bfloat16, device="cuda")
    alpha = torch.ones(2, device="cuda")
    off = torch.tensor([0, 2, 4], dtype=torch.int32, device="cuda")
    with pytest.raises(RuntimeError, match="a single GEMM takes one weight"):
        nvfp4_moe.gemm_w4a16(a, w, 64, alpha)
    with pytest.raises(RuntimeError, match="weight: expected \\[E, "):  # prepared for K = 128, not 256
        nvfp4_moe.gemm_w4a16(torch.ones(4, 256, dtype=torch.bfloat16, device="cuda"), w[:1], 64, alpha)
    with pytest.raises(RuntimeError, match="a: expected dtype"):
        nvfp4_moe.gemm_w4a16(a.half(), w[:1], 64, alpha)
    with pytest.raises(RuntimeError, match="alpha: expected 4 float32 values"):
        nvfp4_moe.grouped_gemm_w4a16(a, off, w, 64, alpha)
    with pytest.raises(RuntimeError, match="expert_offsets: expected shape \\[3\\]"):
        nvfp4_moe.grouped_gemm_w4a16(a, off[:2], w, 64, torch.ones(4, device="cuda"))
    with pytest.raises(RuntimeError, match="out: expected dtype torch.bfloat16 or torch.float32"):
        nvfp4_moe.gemm_w4a16(a, w[:1], 64, alpha, torch.float16)
    codes, scales = nvfp4_moe.quantize(a, torch.ones(1, device="cuda"))
    with pytest.raises(RuntimeError, match="a_scales: expected >= "):
        nvfp4_moe.grouped_gemm_w4a4(codes, scales, off, w, 64, torch.ones(4, device="cuda"))
    with pytest.raises(RuntimeError, match="alpha: expected a CUDA tensor"):
        nvfp4_moe.gemm_w4a4(codes, scales, w[:1], 64, alpha.cpu())
