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

# 1. The warp-specialized prefill GEMM (docs/GEMM.md v18): its tests, memcheck, A/Bs.
timeout 90 $T --gtest_filter='*WarpSpecialized*' > "$R/ws_tests.log" 2>&1; wsrc=$?
echo "ws tests rc=$wsrc"; grep -E '^\[  (PASSED|FAILED)|Failure' "$R/ws_tests.log" | head -12
save ws_tests
if [[ $wsrc != 124 && $wsrc != 137 ]]; then  # not hung
  timeout 45 compute-sanitizer --tool memcheck --error-exitcode 1 $T --gtest_filter='GemmSm90.WarpSpecializedSmall' \
    > "$R/ws_memcheck.log" 2>&1; echo "ws memcheck rc=$?"
  for ws in 0 1; do
    timeout 40 build/bench/nvfp4moe_bench_gemm --singles --match DSV3 --ws $ws > "$R/gemm_singles_ws$ws.txt" 2>&1
    timeout 40 build/bench/nvfp4moe_bench_gemm --grouped --match "DSV3 w13" --rows 32768 --ws $ws > "$R/gemm_grouped_ws$ws.txt" 2>&1
  done
  grep -hE " 4096 |32768" "$R"/gemm_*_ws*.txt | head -16
  save ws_gemm
  for ws in 0 1; do
    NVFP4MOE_GEMM_WS=$ws timeout 40 build/nvfp4-moe bench --no-baseline --model deepseek-v3 --tokens 4096 --iters 5 \
      > "$R/moe_ws$ws.txt" 2>&1
  done
  save ws_layer
fi
# 2. The combine fused into GEMM2 (v17, off by default): the layer at T = 1, 4, 16 and its tests.
for fc in 0 1; do
  NVFP4MOE_FUSED_COMBINE=$fc timeout 40 build/nvfp4-moe bench --no-baseline --tokens 1,4,16 --iters 50 > "$R/fc_$fc.txt" 2>&1
done
timeout 60 $T --gtest_filter='GemmCombineGpu.*:MoeGpu.SmallDeterministic*' --gtest_repeat=2 > "$R/combine.log" 2>&1
echo "combine tests rc=$?"
save fused_combine
# 3. Every GPU test, 4 shards side by side.
for i in 0 1 2 3; do
  GTEST_TOTAL_SHARDS=4 GTEST_SHARD_INDEX=$i timeout 200 $T --gtest_filter='-*WarpSpecialized*' > "$R/tests_$i.log" 2>&1 &
done
wait
for i in 0 1 2 3; do grep -E '^\[  (PASSED|FAILED)  \]' "$R/tests_$i.log" | head -3; done
save tests
# 4. The quantizers at M = 16 (issue 3's under-5-us target), the T = 4096 layer per kernel, the
#    full layer table.
timeout 60 build/bench/nvfp4moe_bench_quantize --m 16 > "$R/quant_m16.txt" 2>&1
for w in 0 1; do  # the blocked walk (twelfth session, off): quantize_experts K = 7168 536 -> ~495 us?
  NVFP4MOE_QUANT_WALK=$w timeout 60 build/bench/nvfp4moe_bench_quantize --m 65536 --k 7168 > "$R/quant_walk$w.txt" 2>&1
done
save quant
OUT=$R TOOL=build/nvfp4-moe timeout 100 bash scripts/gpu-profile.sh prefill
save prefill
timeout 120 build/nvfp4-moe bench --json "$R/moe_bench.json" > "$R/moe_bench.txt" 2>&1; echo "layer bench rc=$?"
save bench
