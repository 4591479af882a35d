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

# The asynchronous epilogue (docs/GEMM.md v25), most important first.
B=build/bench/nvfp4moe_bench_gemm
# 1. Its tests, then the A/B on the single GEMMs (two interleaved rounds).
timeout 120 $T --gtest_filter='GemmSm90.WarpSpecializedAsync*' > "$R/tests_async.log" 2>&1
grep -E '^\[  (PASSED|FAILED)  \]|FAILED  \]' "$R/tests_async.log" | head -6
for round in 1 2; do
  for a in 0 1; do
    for shape in 4096,2048,768 4096,1536,2048 4096,7168,2048 4096,4096,7168 8192,8192,8192; do
      timeout 40 $B --single $shape --ws-async $a >> "$R/gemm_async${a}_$round.txt" 2>&1
    done
  done
done
grep -HE '^single' "$R"/gemm_async*.txt | sed 's|.*/gemm_||'
save async_ab
# 2. The layer at T = 4096: default; async (the shared expert's singles); grouped at token tile 128
#    with and without it.
layer() {  # name env... -- bench args...
  local name=$1; shift; local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done; shift
  env "${envs[@]}" timeout 60 build/nvfp4-moe bench --no-baseline --tokens 4096 --iters 20 "$@" > "$R/layer_$name.txt" 2>&1
}
layer default --
layer async NVFP4MOE_GEMM_WS_ASYNC_STORE=1 --
layer t128 NVFP4MOE_GEMM_WS_TILE160=0 --
layer t128async NVFP4MOE_GEMM_WS_TILE160=0 NVFP4MOE_GEMM_WS_ASYNC_STORE=1 --
grep -HE '^(deepseek|qwen)' "$R"/layer_*.txt | sed 's|.*/layer_||'
save layer
# 3. Every GPU test with the asynchronous epilogue on (4 shards), then the sanitizers on its small test.
for i in 0 1 2 3; do
  NVFP4MOE_GEMM_WS_ASYNC_STORE=1 GTEST_TOTAL_SHARDS=4 GTEST_SHARD_INDEX=$i timeout 200 $T > "$R/tests_$i.log" 2>&1 &
done
wait
for i in 0 1 2 3; do grep -E '^\[  (PASSED|FAILED)  \]|FAILED  \]' "$R/tests_$i.log" | head -4; done
for tool in memcheck racecheck; do
  timeout 120 compute-sanitizer --tool $tool --error-exitcode 1 $T --gtest_filter='GemmSm90.WarpSpecializedAsyncEpilogueSmall' \
    > "$R/${tool}_async.log" 2>&1
  echo "$tool async rc=$?"; tail -1 "$R/${tool}_async.log"
done
save tests_all
# 4. Qwen3 w2 against M, both epilogues.
for a in 0 1; do
  for m in 2048 4096 8192 16384; do timeout 30 $B --single $m,2048,768 --ws-async $a >> "$R/sweep_async$a.txt" 2>&1; done
done
grep -HE '^single' "$R"/sweep_async*.txt | sed 's|.*/sweep_||'
save sweep
# 5. Nsight Compute of the warp-specialized kernel at Qwen3 w2 M = 4096, both epilogues.
mkdir -p "$R/profile"
for a in 0 1; do
  name=w2_async$a
  timeout 120 ncu --kernel-name-base demangled --kernel-name 'regex:gemm_w4a16_ws_sm90_kernel' --launch-skip 2 --launch-count 1 \
    --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis \
    --section MemoryWorkloadAnalysis --section SourceCounters \
    --metrics sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active \
    -f -o "$R/profile/$name" $B --single 4096,2048,768 --ws-async $a > "$R/profile/$name.log" 2>&1
  ncu -i "$R/profile/$name.ncu-rep" --page details > "$R/profile/$name.txt" 2>&1
  ncu -i "$R/profile/$name.ncu-rep" --page source --csv --print-source sass > "$R/profile/$name.sass.csv" 2>&1
  grep -E 'Duration|hmma|Issue Slots Busy|No Eligible' "$R/profile/$name.txt" | head -6
  save "profile_$name"
done
