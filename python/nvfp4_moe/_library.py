"""Locating and loading the compiled extension (libnvfp4_moe_torch.so).

Search order: the file named by the environment variable ``NVFP4MOE_TORCH_LIB``; a copy next to
this package; then the CMake build folders of the source tree (``build-torch/python`` and
``build/python``). Loading registers the ``torch.ops.nvfp4_moe`` ops and the
``torch.classes.nvfp4_moe.MoeLayer`` class.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

LIBRARY_NAME = "libnvfp4_moe_torch.so"
ENV_VAR = "NVFP4MOE_TORCH_LIB"

_loaded_path: Path | None = None


def candidate_paths() -> list[Path]:
    """Where the extension is looked for, in order."""
    here = Path(__file__).resolve().parent
    repo = here.parent.parent
    paths = []
    env = os.environ.get(ENV_VAR)
    if env:
        paths.append(Path(env))
    paths.append(here / LIBRARY_NAME)
    for build in ("build-torch", "build"):
        paths.append(repo / build / "python" / LIBRARY_NAME)
    return paths


def load_library() -> Path:
    """Load the extension once and return its path; raises ``ImportError`` naming the places tried."""
    global _loaded_path
    if _loaded_path is not None:
        return _loaded_path
    env = os.environ.get(ENV_VAR)
    if env and not Path(env).is_file():
        raise ImportError(f"{ENV_VAR}={env}: no such file")
    for path in candidate_paths():
        if path.is_file():
            torch.ops.load_library(str(path))
            _loaded_path = path
            return path
    tried = "\n  ".join(str(p) for p in candidate_paths())
    raise ImportError(
        f"nvfp4_moe: {LIBRARY_NAME} not found. Build it with "
        f"cmake -DNVFP4MOE_BUILD_TORCH=ON (see README, 'Python') or set {ENV_VAR}. Tried:\n  {tried}"
    )
