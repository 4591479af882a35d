#!/usr/bin/env bash
# SASS and resource usage of the compiled kernels, on a machine without a GPU (the CUDA toolkit
# here has nvcc and ptxas but not cuobjdump): fetches NVIDIA's cuobjdump and nvdisasm wheels
# from PyPI into .deps/cuda-tools once (git-ignored; a development aid, not a build dependency).
#
#   scripts/sass.sh usage <object or library>              registers, stack, spills per kernel
#   scripts/sass.sh dump  <object or library> <mangled>    SASS of one kernel
#   e.g. scripts/sass.sh usage build/CMakeFiles/nvfp4moe.dir/src/cuda/gemm.cu.o | grep decode
set -euo pipefail
cd "$(dirname "$0")/.."
tools=.deps/cuda-tools
if ! command -v cuobjdump > /dev/null || ! command -v nvdisasm > /dev/null; then
  if [[ ! -x $tools/nvidia/cu13/bin/cuobjdump || ! -x $tools/nvidia/cu13/bin/nvdisasm ]]; then
    mkdir -p "$tools"
    python3 -m pip download --quiet --no-deps --dest "$tools" nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm
    for w in "$tools"/nvidia_cuda_*.whl; do python3 -m zipfile -e "$w" "$tools"; done
    chmod +x "$tools"/nvidia/cu13/bin/*
  fi
  PATH=$PWD/$tools/nvidia/cu13/bin:$PATH
fi
case "${1:-}" in
  usage) cuobjdump --dump-resource-usage "$2" | awk '/Function/ {f = $2} /REG:/ {print f, $0}' ;;
  dump) cuobjdump -sass -fun "$3" "$2" ;;
  *) sed -n 2,8p "$0"; exit 2 ;;
esac
