"""CPU-only checks of the torch.compile support of the C++ MoE layer (nvfp4_moe/_fake.py): the fake
class of torch.classes.nvfp4_moe.MoeLayer, the fake moe_forward / moe_forward_out on fake tensors,
and an FX trace through the op. No GPU needed (fake CUDA tensors); the real layer's
``__obj_flatten__`` and the compiled-vs-eager bits are checked on the GPU in test_compile_graph.py."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import nvfp4_moe  # noqa: E402
from nvfp4_moe._fake import FakeMoeLayer  # noqa: E402
from torch._library.fake_class_registry import FakeScriptObject, find_fake_class  # noqa: E402
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode  # noqa: E402
from torch.fx.experimental.proxy_tensor import make_fx  # noqa: E402

QUALNAME = "__torch__.torch.classes.nvfp4_moe.MoeLayer"
H, I, E, TOP_K, MAX_T = 128, 64, 8, 2, 64
# What MoeLayer::obj_flatten (csrc/moe_layer.h) returns for such a layer, in its order.
FLAT = (("cfg_layer_index", 1), ("cfg_hidden", H), ("cfg_intermediate", I), ("cfg_num_experts", E),
        ("cfg_top_k", TOP_K), ("cfg_max_tokens", MAX_T), ("cfg_device_index", 0), ("cfg_mode", "w4a4"))


def fake_layer() -> FakeScriptObject:
    """The object torch.compile hands the fake ops (maybe_to_fake_obj wraps the unflattened class)."""
    return FakeScriptObject(FakeMoeLayer.__obj_unflatten__(FLAT), QUALNAME, None)


def bf16(*shape):
    return torch.empty(shape, dtype=torch.bfloat16, device="cuda")


def f32(*shape):
    return torch.empty(shape, dtype=torch.float32, device="cuda")


def test_fake_class_registered_and_unflattens():
    assert find_fake_class(QUALNAME) is FakeMoeLayer
    fake = FakeMoeLayer.__obj_unflatten__(FLAT)
    assert (fake.hidden_size(), fake.intermediate_size(), fake.num_experts(), fake.top_k(), fake.max_tokens(),
            fake.layer_index(), fake.device_index(), fake.mode()) == (H, I, E, TOP_K, MAX_T, 1, 0, "w4a4")
    assert tuple(fake.router_weight().shape) == (E, H)
    with pytest.raises(RuntimeError, match="expected fields"):
        FakeMoeLayer.__obj_unflatten__(FLAT[:-1])


@pytest.mark.parametrize("t", [0, 1, 37, MAX_T])
def test_fake_moe_forward_shapes(t):
    layer = fake_layer()
    with FakeTensorMode():
        out = torch.ops.nvfp4_moe.moe_forward(layer, bf16(t, H), f32(t, E))
        assert isinstance(out, FakeTensor)
        assert (tuple(out.shape), out.dtype, out.device) == ((t, H), torch.bfloat16, torch.device("cuda", 0))
        buf = bf16(t, H)
        assert torch.ops.nvfp4_moe.moe_forward_out(layer, bf16(t, H), f32(t, E), out=buf) is None
        assert tuple(FakeMoeLayer.__obj_unflatten__(FLAT).forward(bf16(t, H), f32(t, E)).shape) == (t, H)


@pytest.mark.parametrize("hidden, logits, message", [
    (lambda: bf16(MAX_T + 1, H), lambda: f32(MAX_T + 1, E), "expected at most max_tokens = 64"),
    (lambda: bf16(4, H + 16), lambda: f32(4, E), r"hidden: expected \[T, 128\]"),
    (lambda: torch.empty(4, H, device="cuda"), lambda: f32(4, E), "hidden: expected bfloat16"),
    (lambda: bf16(4, H, 1), lambda: f32(4, E), "hidden: expected a 2-D tensor"),
    (lambda: bf16(4, H), lambda: f32(4, E - 1), r"router_logits: expected shape \[4, 8\]"),
    (lambda: bf16(4, H), lambda: f32(3, E), r"router_logits: expected shape \[4, 8\]"),
    (lambda: bf16(4, H), lambda: bf16(4, E), "router_logits: expected float32"),
    (lambda: torch.empty(4, H, dtype=torch.bfloat16, device="cpu"), lambda: f32(4, E), "expected a tensor on cuda:0"),
])
def test_fake_moe_forward_rejects_bad_inputs(hidden, logits, message):
    layer = fake_layer()
    with FakeTensorMode(), pytest.raises(RuntimeError, match=message):
        torch.ops.nvfp4_moe.moe_forward(layer, hidden(), logits())


def test_fake_moe_forward_out_rejects_bad_out():
    layer = fake_layer()
    with FakeTensorMode():
        with pytest.raises(RuntimeError, match=r"out: expected \[4, 128\]"):
            torch.ops.nvfp4_moe.moe_forward_out(layer, bf16(4, H), f32(4, E), out=bf16(5, H))
        with pytest.raises(RuntimeError, match="out: expected bfloat16"):
            torch.ops.nvfp4_moe.moe_forward_out(layer, bf16(4, H), f32(4, E), out=f32(4, H))


def test_make_fx_traces_through_moe_forward():
    """The op stays one opaque node whose output feeds torch ops (what torch.compile's graph holds)."""
    def fn(layer, hidden, logits):
        return nvfp4_moe.moe_forward(layer, hidden * 2, logits).float() + 1.0

    with FakeTensorMode():
        gm = make_fx(fn)(fake_layer(), bf16(19, H), f32(19, E))
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert torch.ops.nvfp4_moe.moe_forward.default in targets
    out = [n for n in gm.graph.nodes if n.op == "output"][0].args[0]
    val = out[0].meta["val"] if isinstance(out, (list, tuple)) else out.meta["val"]
    assert (tuple(val.shape), val.dtype) == ((19, H), torch.float32)


def test_functionalized_trace_of_moe_forward_out():
    """torch.compile functionalizes the out= op (auto_functionalized) with the fake layer as an input."""
    from torch._subclasses.functional_tensor import dispatch_functionalize

    def fn(layer, hidden, logits, out):
        nvfp4_moe.moe_forward(layer, hidden, logits, out=out)
        return out * 2

    with FakeTensorMode():
        gm = make_fx(dispatch_functionalize(fn))(fake_layer(), bf16(7, H), f32(7, E), bf16(7, H))
    calls = [n for n in gm.graph.nodes if n.op == "call_function"]
    assert any(n.target is torch.ops.higher_order.auto_functionalized_v2
               and n.args[0] is torch.ops.nvfp4_moe.moe_forward_out.default for n in calls), gm.code


def test_fake_class_mirrors_every_cpp_method():
    """Every method of the C++ class (its registered schemas) has a fake twin taking the same
    arguments, and __obj_flatten__ returns (name, value) pairs, one per FakeMoeLayer.FIELDS entry."""
    import inspect

    methods = {s.name: s for s in torch._C._jit_get_custom_class_schemas()
               if s.arguments and str(s.arguments[0].type) == QUALNAME}
    assert "__obj_flatten__" in methods and "forward" in methods, sorted(methods)
    flat_returns = methods["__obj_flatten__"].returns[0].type.containedTypes()
    assert len(flat_returns) == len(FakeMoeLayer.FIELDS)
    for name, s in methods.items():
        if name in ("__init__", "__obj_flatten__"):
            continue
        fake = getattr(FakeMoeLayer, name, None)
        assert fake is not None, f"FakeMoeLayer lacks {name}"
        assert len(inspect.signature(fake).parameters) == len(s.arguments), f"{name}: arity differs from {s}"
