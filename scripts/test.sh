#!/usr/bin/env bash
# Builds everything and runs the test suite (ctest). Without a GPU the GPU tests skip and
# say so; the CUDA sources are still compiled for sm_90a. When torch is installed, the PyTorch
# extension is built too and its pytest suite runs (its GPU tests skip without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x /usr/local/cuda/bin/nvcc ]] && export PATH=/usr/local/cuda/bin:$PATH
jobs=${JOBS:-$(nproc)}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs" "$@"

if python3 -c 'import torch, pytest' > /dev/null 2>&1; then
  cmake -S . -B build-torch -G Ninja -DCMAKE_BUILD_TYPE=Release -DNVFP4MOE_BUILD_TORCH=ON \
    -DNVFP4MOE_BUILD_TESTS=OFF -DNVFP4MOE_BUILD_BENCH=OFF \
    -DCMAKE_PREFIX_PATH="$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')"
  cmake --build build-torch -j "$jobs" --target nvfp4_moe_torch
  NVFP4MOE_TORCH_LIB=$PWD/build-torch/python/libnvfp4_moe_torch.so python3 -m pytest python/tests -q -p no:cacheprovider
else
  echo "python tests: skipped (torch or pytest not installed here; scripts/gpu-check.sh runs them on a GPU machine)"
fi
