#!/usr/bin/env bash
# Fuzzes the safetensors parser with libFuzzer + ASan + UBSan (clang). Independent of the
# CMake/CUDA build: compiles the two reader/writer sources directly.
#
#   scripts/fuzz.sh [seconds]     (default 60; the corpus persists in fuzz-corpus/)
#
# Artifacts (crashing inputs) land in build-fuzz/; the script exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
CXX=${CXX_FUZZ:-clang++}
command -v "$CXX" >/dev/null || { echo "fuzz.sh: $CXX not found (apt-get install clang)" >&2; exit 1; }

inc=(-Iinclude)
[[ -f .deps/include/nlohmann/json.hpp ]] && inc+=(-isystem .deps/include)
srcs=(src/checkpoint/safetensors_reader.cpp src/checkpoint/safetensors_writer.cpp)
out=build-fuzz
mkdir -p "$out" fuzz-corpus/safetensors

echo "fuzz.sh: building seed generator and fuzzer with $($CXX --version | head -1)"
$CXX -std=c++20 -O1 "${inc[@]}" "${srcs[@]}" fuzz/make_seeds.cpp -o "$out/make_seeds"
$CXX -std=c++20 -O1 -g -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  "${inc[@]}" "${srcs[@]}" fuzz/safetensors_fuzz.cpp -o "$out/safetensors_fuzz"

seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
"$out/make_seeds" "$seeds"

echo "fuzz.sh: running for ${seconds}s"
"$out/safetensors_fuzz" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$out/" -print_final_stats=1 fuzz-corpus/safetensors "$seeds"
