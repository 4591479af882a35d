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

# Where the Qwen3 singles' time goes (docs/GEMM.md v25: not the epilogue's stores).
B=build/bench/nvfp4moe_bench_gemm
mkdir -p "$R/profile"
prof() {  # name kernel-regex launch-skip args...
  local name=$1 regex=$2 skip=$3; shift 3
  timeout 120 ncu --kernel-name-base demangled --kernel-name "regex:$regex" --launch-skip $skip --launch-count 1 \
    --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis \
    --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables --section SourceCounters --section LaunchStats \
    --metrics sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__cycles_active.avg \
    -f -o "$R/profile/$name" $B "$@" > "$R/profile/$name.log" 2>&1
  ncu -i "$R/profile/$name.ncu-rep" --page details > "$R/profile/$name.txt" 2>&1
  ncu -i "$R/profile/$name.ncu-rep" --page source --csv --print-source sass > "$R/profile/$name.sass.csv" 2>&1
  echo "== $name"; grep -E 'Duration|hmma|Issue Slots Busy|SM Active Cycles|DRAM Throughput|Registers Per' "$R/profile/$name.txt" | head -8
  save "profile_$name"
}
# 1. The GEMM kernel at Qwen3 w13 M = 4096 (fitted 96-row tiles, 16 stages a tile), and the two
#    front ends at both Qwen3 shapes (act_permute for W4A16, act_dequant for W4A4).
prof w13 'gemm_w4a16_ws_sm90_kernel' 2 --single 4096,1536,2048
prof permute_w13 'act_permute' 2 --single 4096,1536,2048
prof dequant_w13 'act_dequant' 2 --single 4096,1536,2048
prof permute_w2 'act_permute' 2 --single 4096,2048,768
prof dequant_w2 'act_dequant' 2 --single 4096,2048,768
# 2. The W4A16 GEMM with the MMA width forced to 128 rows (unfitted) for comparison.
prof w13_nofit 'gemm_w4a16_ws_sm90_kernel' 2 --single 4096,1536,2048 --ws-fit 0
