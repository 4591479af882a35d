"""nvfp4_moe: PyTorch ops and modules over the nvfp4-moe C++/CUDA library (NVFP4 quantization,
W4A4/W4A16 GEMMs, MoE routing and the MoE layer on Hopper).

Importing the package loads the compiled extension (see ``_library.load_library`` for where it is
looked for), which registers ``torch.ops.nvfp4_moe.*`` and ``torch.classes.nvfp4_moe.MoeLayer``, and
registers the fake implementations torch.compile needs.
"""

from __future__ import annotations

from ._library import load_library

library_path = load_library()

from . import _fake  # noqa: E402

_fake.register()

from . import layout, ops  # noqa: E402
from .config import MoeConfig  # noqa: E402
from .modules import Nvfp4Linear, Nvfp4MoE, Nvfp4MoELayer  # noqa: E402
from .ops import (combine, dequantize, gemm_w4a4, gemm_w4a16, grouped_gemm_w4a4, grouped_gemm_w4a16,  # noqa: E402
                  moe_forward, permute, prepare_weights, quantize, quantize_experts, quantize_runtime_scale,
                  route, silu_and_mul, silu_and_mul_quantize_experts)
from .safetensors_io import Checkpoint, load_file, save_file  # noqa: E402

__all__ = [
    "Checkpoint", "MoeConfig", "Nvfp4Linear", "Nvfp4MoE", "Nvfp4MoELayer", "combine", "dequantize", "gemm_w4a4",
    "gemm_w4a16", "grouped_gemm_w4a4", "grouped_gemm_w4a16", "layout", "library_path", "load_file", "moe_forward",
    "ops", "permute", "prepare_weights", "quantize", "quantize_experts", "quantize_runtime_scale", "route",
    "save_file", "silu_and_mul", "silu_and_mul_quantize_experts",
]
