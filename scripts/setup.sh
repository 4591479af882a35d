#!/usr/bin/env bash
# Installs what nvfp4-moe needs on a fresh Debian/Ubuntu machine, builds it, and (unless
# --deps-only) runs the main job: `nvfp4-moe run` on its built-in default MoE layer.
#
#   scripts/setup.sh             install + build + run
#   scripts/setup.sh --deps-only install dependencies and stage headers, nothing else
#
# Dependencies: Debian packages (compilers, CMake, GoogleTest, nlohmann-json, CLI11, clang
# for the fuzzer) and the CUDA 13 toolkit. The header-only packages are also copied into
# .deps/include (git-ignored) so the tree builds on a machine without a package registry
# (scripts/gpu-check.sh on the GPU machine). The GEMM uses its own PTX wrappers, not CUTLASS.
set -euo pipefail
cd "$(dirname "$0")/.."

deps_only=0
[[ "${1:-}" == "--deps-only" ]] && deps_only=1

need_pkgs=()
have_header() { [[ -f "/usr/include/$1" ]]; }
command -v cmake >/dev/null || need_pkgs+=(cmake)
command -v ninja >/dev/null || need_pkgs+=(ninja-build)
command -v g++ >/dev/null || need_pkgs+=(g++)
command -v clang++ >/dev/null || need_pkgs+=(clang)
have_header nlohmann/json.hpp || need_pkgs+=(nlohmann-json3-dev)
have_header CLI/CLI.hpp || need_pkgs+=(libcli11-dev)
have_header gtest/gtest.h || need_pkgs+=(libgtest-dev)
if ((${#need_pkgs[@]})); then
  echo "setup: installing Debian packages: ${need_pkgs[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
command -v nvcc >/dev/null || { echo "setup: nvcc (CUDA 13 toolkit) not found on PATH" >&2; exit 1; }

mkdir -p .deps/include
for d in nlohmann CLI; do
  [[ -d .deps/include/$d ]] || cp -r "/usr/include/$d" .deps/include/
done

((deps_only)) && { echo "setup: dependencies ready"; exit 0; }

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build --target nvfp4-moe
./build/nvfp4-moe run
