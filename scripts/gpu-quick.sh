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
save() { tar czf "$OUT/all.tgz" -C "$R" . ; echo "[saved after $1 at ${SECONDS} s]"; }
T=build/tests/nvfp4moe_gpu_tests
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$R/gpu.txt"

# 1. Every GPU test with the defaults (the warp-specialized prefill GEMM since docs/GEMM.md
#    v18), 4 shards side by side; the GEMM and MoE tests once more on the cp.async kernel; the
#    sanitizer on the small MoE configuration and the small warp-specialized GEMM.
for i in 0 1 2 3; do
  GTEST_TOTAL_SHARDS=4 GTEST_SHARD_INDEX=$i timeout 200 $T > "$R/tests_$i.log" 2>&1 &
done
wait
for i in 0 1 2 3; do grep -E '^\[  (PASSED|FAILED)  \]|FAILED  \]' "$R/tests_$i.log" | head -4; done
save tests
NVFP4MOE_GEMM_WS=0 timeout 120 $T --gtest_filter='GemmSm90.*:Moe*' > "$R/tests_cp.log" 2>&1
echo "cp.async GEMM+MoE tests rc=$?"
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 1 $T \
  --gtest_filter='GemmSm90.WarpSpecializedSmall:MoeGpu.SmallDeterministic*:GemmSm90.GroupedGemmOrderActivations:QuantizeExpertsSm90.MatchesReferenceSmall' \
  > "$R/memcheck.log" 2>&1
echo "memcheck rc=$?"
save tests_cp_memcheck
# 2. The quantizers' values in the GEMM's K order (MoeForwardPaths::gemm_order_values): the
#    prefill layer with and without them.
for off in none gemm_order_values; do
  timeout 60 build/nvfp4-moe bench --no-baseline --tokens 1024,4096,16384 --iters 10 --paths-off $off \
    > "$R/moe_order_off_$off.txt" 2>&1
done
grep -hE '^(deepseek|qwen)' "$R"/moe_order_off_*.txt
save gemm_order
# 3. The layer table (defaults), then the T = 4096 layer per kernel.
timeout 150 build/nvfp4-moe bench --json "$R/moe_bench.json" > "$R/moe_bench.txt" 2>&1; echo "layer bench rc=$?"
save bench
OUT=$R TOOL=build/nvfp4-moe timeout 100 bash scripts/gpu-profile.sh prefill
save prefill
OUT=$R BIN=build/bench timeout 150 bash scripts/gpu-profile.sh ws
rm -f "$R"/profile/*.ncu-rep  # the text pages are enough; the reports are large
save ws_profile
# 4. The GEMM tables (issue 4): singles and grouped, defaults.
timeout 150 build/bench/nvfp4moe_bench_gemm --singles > "$R/gemm_singles.txt" 2>&1; echo "singles rc=$?"
timeout 200 build/bench/nvfp4moe_bench_gemm --grouped > "$R/gemm_grouped.txt" 2>&1; echo "grouped rc=$?"
save gemm
