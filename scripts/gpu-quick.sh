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

# 1. The knobs' tests first (device time is scarce; a short call still checks them): the GEMM and
#    MoE tests with the direct epilogue (NVFP4MOE_GEMM_WS_EPILOGUE=direct; staged is the default
#    since docs/GEMM.md v22), 3 shards, beside the quantizers' and the layer's GEMM-order tests
#    with the 16-byte chunk stores (NVFP4MOE_QUANT_GEMM_STORE=chunks, off: measured slower).
for i in 0 1 2; do
  NVFP4MOE_GEMM_WS_EPILOGUE=direct GTEST_TOTAL_SHARDS=3 GTEST_SHARD_INDEX=$i timeout 150 $T \
    --gtest_filter='GemmSm90.*:Moe*' > "$R/tests_direct_$i.log" 2>&1 &
done
NVFP4MOE_QUANT_GEMM_STORE=chunks timeout 150 $T --gtest_filter='Quantize*:MoeGpu.GemmOrder*:MoeGpu.Large*' \
  > "$R/tests_chunks.log" 2>&1 &
wait
for f in "$R"/tests_direct_*.log "$R"/tests_chunks.log; do
  echo "$(basename "$f"): $(grep -E '^\[  PASSED  \]' "$f") $(grep -cE '^\[  FAILED  \] [A-Z]' "$f") failed"
  grep -E '^\[  FAILED  \] [A-Z]' "$f" | head -5
done
save tests_new
# 2. The defaults of the fifteenth session against what they replaced (docs/GEMM.md v21, v22;
#    H100 then: w2 M = 4096 244 -> 183 us staged; the layers at T = 4096 -11% / -6.5% W4A16):
#    the GEMM singles with the direct and the staged epilogue, interleaved; the layers at
#    T = 4096 with the direct epilogue, with the chunk stores, and W4A16 in the natural order.
for round in 1 2; do
  for e in 0 1; do
    for shape in 4096,7168,2048 4096,4096,7168 4096,2048,768; do
      timeout 30 build/bench/nvfp4moe_bench_gemm --single $shape --ws-epilogue $e >> "$R/gemm_epi${e}_$round.txt" 2>&1
    done
  done
done
grep -HE 'single' "$R"/gemm_epi*.txt | sed 's|.*/gemm_||'
# Qwen3 w13 at M = 4096 (N = 1536): the plan takes 3 waves of 128-row cp.async CTAs (78 us, 50% of
# cuBLAS) over 2 waves of warp-specialized 256-row CTAs (98 us with the direct epilogue); with
# the staged epilogue the wide CTA may win (then kWideTileTimeRatio needs a warp-specialized value).
for bn in 0 256; do
  for m in 4096 8192; do
    timeout 30 build/bench/nvfp4moe_bench_gemm --single $m,1536,2048 --block-n $bn >> "$R/gemm_qwen3_w13_bn$bn.txt" 2>&1
  done
done
grep -H 'single' "$R"/gemm_qwen3_w13_bn*.txt | sed 's|.*/gemm_||'
save gemm_epilogue
layer() {  # name env... -- bench args...
  local name=$1; shift; local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done; shift
  env "${envs[@]}" timeout 60 build/nvfp4-moe bench --no-baseline --tokens 4096 --iters 10 "$@" > "$R/layer_$name.txt" 2>&1
}
for round in 1 2; do
  layer default_$round --
  layer direct_$round NVFP4MOE_GEMM_WS_EPILOGUE=direct --
  layer chunks_$round NVFP4MOE_QUANT_GEMM_STORE=chunks --
  layer w4a16_$round -- --mode w4a16
  layer w4a16_natural_$round -- --mode w4a16 --paths-off gemm_order_bf16
  save layer_$round
done
grep -HE '^(deepseek|qwen)' "$R"/layer_*.txt | sed 's|.*/layer_||'
# 3. Every GPU test with the defaults (4 shards side by side), the GEMM and MoE tests on the
#    cp.async kernel, memcheck and racecheck on the new paths.
for i in 0 1 2 3; do
  GTEST_TOTAL_SHARDS=4 GTEST_SHARD_INDEX=$i timeout 200 $T > "$R/tests_$i.log" 2>&1 &
done
wait
for i in 0 1 2 3; do grep -E '^\[  (PASSED|FAILED)  \]|FAILED  \]' "$R/tests_$i.log" | head -4; done
save tests
for tool in memcheck racecheck; do
  timeout 100 compute-sanitizer --tool $tool --error-exitcode 1 $T \
    --gtest_filter='GemmSm90.WarpSpecializedStagedEpilogue' > "$R/${tool}_staged.log" 2>&1
  echo "$tool staged epilogue rc=$?"; tail -2 "$R/${tool}_staged.log"
done
NVFP4MOE_GEMM_WS=0 timeout 120 $T --gtest_filter='GemmSm90.*:Moe*' > "$R/tests_cp.log" 2>&1
echo "cp.async GEMM+MoE tests rc=$?"
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 1 $T \
  --gtest_filter='GemmSm90.WarpSpecializedSmall:MoeGpu.SmallDeterministic*:MoeGpu.GemmOrderValues*:QuantizeExpertsSm90.MatchesReferenceSmall' \
  > "$R/memcheck.log" 2>&1
echo "memcheck rc=$?"
save tests_more
# 4. The layer table (defaults) and the T = 4096 layer per kernel (also with chunk stores).
timeout 150 build/nvfp4-moe bench --json "$R/moe_bench.json" > "$R/moe_bench.txt" 2>&1; echo "layer bench rc=$?"
save bench
OUT=$R TOOL=build/nvfp4-moe timeout 100 bash scripts/gpu-profile.sh prefill
mkdir -p "$R/chunks"
NVFP4MOE_QUANT_GEMM_STORE=chunks OUT=$R/chunks TOOL=build/nvfp4-moe timeout 100 bash scripts/gpu-profile.sh prefill
save prefill
# 5. Where the warp-specialized kernel loses on DeepSeek-V3 w2 (K = 2048: 71% of cuBLAS against
#    w13's 95%): ncu stall reasons per source line, w2 and w13 at M = 4096. Then the GEMM singles.
OUT=$R BIN=build/bench timeout 150 bash scripts/gpu-profile.sh ws_single
save ws_profile
timeout 150 build/bench/nvfp4moe_bench_gemm --singles > "$R/gemm_singles.txt" 2>&1; echo "singles rc=$?"
save gemm
