#!/usr/bin/env bash
# A short, prioritized GPU run for when device time is scarce: binaries are built here (a CPU
# machine with nvcc) and carried, the device only runs them, stage by stage, most important
# first, and packs everything measured so far into one tarball after each stage, so a run cut
# off by its time limit still returns its first stages. (scripts/gpu-check.sh is the complete
# run from source.)
#
#   scripts/gpu-quick.sh stage        here: build (Release) and pack the binaries into .gl/bin.tgz
#   scripts/gpu-quick.sh run          on the GPU machine: unpack, run the stages; results in
#                                     $OUT/all.tgz (one file: the device returns few files)
#
# The device call: command "scripts/gpu-quick.sh run", carry [".gl"] (git-ignored).
# The stages are the open questions of docs/GEMM.md and docs/RESULTS.md (newest section); edit
# them as those change.
set -uo pipefail
cd "$(dirname "$0")/.."
bins=(build/nvfp4-moe build/tests/nvfp4moe_gpu_tests build/bench/nvfp4moe_bench_gemm build/bench/nvfp4moe_bench_quantize)

if [[ "${1:-}" == stage ]]; then
  [[ -x /usr/local/cuda/bin/nvcc ]] && export PATH=/usr/local/cuda/bin:$PATH
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null && cmake --build build -j"${JOBS:-4}" || exit 1
  stage=$(mktemp -d)
  cp "${bins[@]}" "$stage"/ && strip "$stage"/* && mkdir -p .gl && tar czf .gl/bin.tgz -C "$stage" . || exit 1
  rm -rf "$stage"
  echo "gpu-quick: .gl/bin.tgz ($(du -h .gl/bin.tgz | cut -f1)); run with carry [\".gl\"]"
  exit 0
fi
[[ "${1:-}" == run ]] || { echo "usage: scripts/gpu-quick.sh stage | run" >&2; exit 2; }

OUT=${OUT:-$PWD/out}
R=$(mktemp -d)
mkdir -p "$OUT" build/tests build/bench
tar xzf .gl/bin.tgz -C "$R" || { echo "gpu-quick: no .gl/bin.tgz (run 'stage' first, carry .gl)" >&2; exit 1; }
for b in "${bins[@]}"; do mv "$R/$(basename "$b")" "$b"; done
save() { tar czf "$OUT/all.tgz" --exclude="*.ncu-rep" -C "$R" . ; echo "[saved after $1 at ${SECONDS} s]"; }
T=build/tests/nvfp4moe_gpu_tests
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$R/gpu.txt"

# 1. Every GPU test with the defaults (4 shards side by side; since docs/GEMM.md v24 the prefill
#    kernels' activation front ends store 16-byte chunks after lane transposes), then the GEMM
#    tests with the 4-byte stores (NVFP4MOE_GEMM_ACT_STORE=strided).
for i in 0 1 2 3; do
  GTEST_TOTAL_SHARDS=4 GTEST_SHARD_INDEX=$i timeout 200 $T > "$R/tests_$i.log" 2>&1 &
done
wait
for i in 0 1 2 3; do grep -E '^\[  (PASSED|FAILED)  \]|FAILED  \]' "$R/tests_$i.log" | head -4; done
for i in 0 1 2; do
  NVFP4MOE_GEMM_ACT_STORE=strided GTEST_TOTAL_SHARDS=3 GTEST_SHARD_INDEX=$i timeout 150 $T \
    --gtest_filter='GemmSm90.*' > "$R/tests_strided_$i.log" 2>&1 &
done
wait
for f in "$R"/tests_strided_*.log; do
  echo "$(basename "$f"): $(grep -E '^\[  PASSED  \]' "$f") $(grep -cE '^\[  FAILED  \] [A-Z]' "$f") failed"
  grep -E '^\[  FAILED  \] [A-Z]' "$f" | head -5
done
save tests
# 2. The front ends' chunk stores against the 4-byte ones (v24): the single GEMMs at M = 4096,
#    whose W4A16 call runs act_permute and W4A4 call act_dequant before the GEMM (Qwen3 w13:
#    ~12-18 us of 58-64; predicted -5 to -8 us there), two interleaved rounds; the layer at
#    T = 4096 (the shared expert's act_dequant calls).
for round in 1 2; do
  for st in 0 1; do
    for shape in 4096,1536,2048 4096,2048,768 4096,7168,2048; do
      timeout 30 build/bench/nvfp4moe_bench_gemm --single $shape --act-store $st >> "$R/gemm_act${st}_$round.txt" 2>&1
    done
  done
done
grep -HE 'single' "$R"/gemm_act*.txt | sed 's|.*/gemm_||'
layer() {  # name env... -- bench args...
  local name=$1; shift; local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done; shift
  env "${envs[@]}" timeout 60 build/nvfp4-moe bench --no-baseline --tokens 4096 --iters 20 "$@" > "$R/layer_$name.txt" 2>&1
}
layer strided NVFP4MOE_GEMM_ACT_STORE=strided --
layer chunks --
grep -HE '^(deepseek|qwen)' "$R"/layer_*.txt | sed 's|.*/layer_||'
save act_store
# 3. memcheck on the front ends' test.
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 1 $T --gtest_filter='GemmSm90.ActivationFrontEndChunkStores' \
  > "$R/memcheck_act.log" 2>&1
echo "memcheck front ends rc=$?"; tail -2 "$R/memcheck_act.log"
save tests_more
