#!/usr/bin/env bash
# One command for a GPU machine (the lent H100): build, run every test including the GPU ones,
# compute-sanitizer on small GPU cases, the benchmarks, and the tool's own GPU check; prints a
# short summary table last. Logs and JSON go to $OUT (default: ./out).
#
#   scripts/gpu-check.sh [--no-bench] [--no-sanitizer]
#
# Needs the staged headers in .deps/ (scripts/setup.sh --deps-only puts them there; carry the
# folder to a machine without a package registry).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
run_bench=1; run_sanitizer=1
for a in "$@"; do
  case "$a" in
    --no-bench) run_bench=0 ;;
    --no-sanitizer) run_sanitizer=0 ;;
    *) echo "gpu-check: unknown argument $a" >&2; exit 2 ;;
  esac
done
[[ -x /usr/local/cuda/bin/nvcc ]] && export PATH=/usr/local/cuda/bin:$PATH

declare -a summary
record() { summary+=("$(printf '%-34s %s' "$1" "$2")"); }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
nvcc --version | tail -1 | tee -a "$OUT/gpu.txt"

t0=$(date +%s)
if cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > "$OUT/configure.log" 2>&1 &&
   cmake --build build -j"$(nproc)" > "$OUT/build.log" 2>&1; then
  record "build" "ok ($(( $(date +%s) - t0 )) s)"
else
  tail -40 "$OUT/build.log"; record "build" "FAILED (see build.log)"
  printf '%s\n' "${summary[@]}"; exit 1
fi

ctest --test-dir build -j8 --output-on-failure > "$OUT/ctest.log" 2>&1
rc=$?
record "ctest (all, incl. GPU)" "$(grep -E 'tests passed|tests failed' "$OUT/ctest.log" | tail -1) rc=$rc"
grep -E '^\s+[0-9]+ - .*\((Failed|SEGFAULT|Timeout|Subprocess)' "$OUT/ctest.log" | head -20

# The GPU tests once more with a non-default path forced through the environment:
# variant_tests LABEL LOG FILTER VAR=VALUE... (ctest above ran them with the defaults).
variant_tests() {
  local label=$1 log=$OUT/$2 filter=$3; shift 3
  env "$@" build/tests/nvfp4moe_gpu_tests --gtest_filter="$filter" > "$log" 2>&1
  local rc=$?
  record "$label" "$(grep -E '^\[  (PASSED|FAILED)  \]' "$log" | head -2 | tr '\n' ' ') rc=$rc"
}
if [[ -x build/tests/nvfp4moe_gpu_tests ]]; then
  # The register decode kernel for every decode call (the ring kernel is the grouped default since
  # docs/GEMM.md v15; the register kernel keeps the single GEMMs and the wide CTA).
  variant_tests "GEMM+MoE tests, register decode" gpu-tests-register.log 'GemmSm90.*:Moe*' NVFP4MOE_GEMM_RING=0
  # The cp.async kernel for every 256-row CTA (cuda/gemm.h set_gemm_ws_pipeline; the
  # warp-specialized kernel is the default since docs/GEMM.md v18).
  variant_tests "GEMM+MoE tests, cp.async 256-row CTAs" gpu-tests-ws.log 'GemmSm90.*:Moe*' NVFP4MOE_GEMM_WS=0
  # The warp-specialized kernel's direct epilogue (each thread stores its own elements; the
  # staged epilogue is the default since docs/GEMM.md v22).
  variant_tests "GEMM+MoE tests, direct epilogue" gpu-tests-direct-epilogue.log 'GemmSm90.*:Moe*' \
    NVFP4MOE_GEMM_WS_EPILOGUE=direct
  # Single GEMMs on the warp-specialized kernel without wave-fitted token tiles and with one CTA
  # per tile (cuda/gemm.h set_gemm_ws_single_fit / set_gemm_ws_single_persistent; both on by
  # default since docs/GEMM.md v23).
  variant_tests "GEMM+MoE tests, singles unfitted, a CTA per tile" gpu-tests-no-fit-persist.log 'GemmSm90.*:Moe*' \
    NVFP4MOE_GEMM_WS_FIT=0 NVFP4MOE_GEMM_WS_PERSIST=0
  # The activation front ends' 4-byte stores (cuda/gemm.h set_gemm_act_chunk_stores; the 16-byte
  # chunks are the default since docs/GEMM.md v24).
  variant_tests "GEMM tests, front ends' 4-byte stores" gpu-tests-act-strided.log 'GemmSm90.*' \
    NVFP4MOE_GEMM_ACT_STORE=strided
fi

if ((run_sanitizer)) && [[ -x build/tests/nvfp4moe_gpu_tests ]]; then
  # Every GPU suite has small cases whose names contain "Small"; they run under the sanitizers,
  # with the one-launch MoE front end and the forward paths test (small shapes only).
  for tool in memcheck racecheck; do
    compute-sanitizer --tool $tool --error-exitcode 1 build/tests/nvfp4moe_gpu_tests \
      --gtest_filter='*Small*:RoutePermuteValues.*:MoeGpu.ForwardPaths*:GemmSm90.DecodeRing*:QuantizeBulkSm90.Experts*:GemmCombineGpu.WideCta*' > "$OUT/sanitizer-$tool.log" 2>&1
    rc=$?
    record "compute-sanitizer $tool" "$(grep -E '(ERROR|RACECHECK) SUMMARY' "$OUT/sanitizer-$tool.log" | tail -1) rc=$rc"
  done
fi

if [[ -x build/nvfp4-moe ]]; then
  build/nvfp4-moe run --verify > "$OUT/tool-run.log" 2>&1
  rc=$?
  record "nvfp4-moe run --verify" "$(grep -E 'Passed|Failed' "$OUT/tool-run.log" | tail -1) rc=$rc"
fi

# ---- torch extension + pytest (python/) ------------------------------------------------------------
# Builds libnvfp4_moe_torch.so in its own build dir (build-torch; the main build is untouched) and
# runs python/tests against it. Skipped without torch; NVFP4MOE_NO_TORCH=1 skips it too.
if [[ "${NVFP4MOE_NO_TORCH:-0}" != 1 ]] && python3 -c 'import torch' > /dev/null 2>&1; then
  t1=$(date +%s)
  torch_prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
  if cmake -S . -B build-torch -G Ninja -DCMAKE_BUILD_TYPE=Release -DNVFP4MOE_BUILD_TORCH=ON \
       -DNVFP4MOE_BUILD_TESTS=OFF -DNVFP4MOE_BUILD_BENCH=OFF -DCMAKE_PREFIX_PATH="$torch_prefix" \
       > "$OUT/torch-configure.log" 2>&1 &&
     cmake --build build-torch -j"$(nproc)" --target nvfp4_moe_torch > "$OUT/torch-build.log" 2>&1; then
    record "torch extension build" "ok ($(( $(date +%s) - t1 )) s)"
    NVFP4MOE_TORCH_LIB=$PWD/build-torch/python/libnvfp4_moe_torch.so timeout 900 \
      python3 -m pytest python/tests -q -p no:cacheprovider > "$OUT/pytest.log" 2>&1
    rc=$?
    record "pytest python/tests" "$(tail -n 1 "$OUT/pytest.log") rc=$rc"
    grep -E '^(FAILED|ERROR) ' "$OUT/pytest.log" | head -20
  else
    tail -n 30 "$OUT/torch-configure.log" "$OUT/torch-build.log"
    record "torch extension build" "FAILED (see torch-configure.log, torch-build.log)"
  fi
else
  record "torch extension + pytest" "skipped (no torch, or NVFP4MOE_NO_TORCH=1)"
fi
# ---- end of the torch block ----------------------------------------------------------------------

if ((run_bench)); then
  for b in build/bench/nvfp4moe_bench_*; do
    [[ -x "$b" ]] || continue
    name=$(basename "$b")
    timeout "${BENCH_TIMEOUT:-150}" "$b" --json "$OUT/$name.json" > "$OUT/$name.txt" 2>&1
    rc=$?
    record "$name" "rc=$rc (table in $name.txt)"
  done
  timeout "${BENCH_TIMEOUT:-150}" build/nvfp4-moe bench --json "$OUT/moe_bench.json" --plot "$OUT/moe_bench.png" > "$OUT/nvfp4moe_bench_moe_layer.txt" 2>&1
  rc=$?
  record "nvfp4-moe bench" "rc=$rc (table in nvfp4moe_bench_moe_layer.txt)"
  # The grouped decode GEMM's tile assignment, static against claimed (cuda/gemm.h
  # set_gemm_decode_claiming; the heuristics claim from 8 tiles per CTA up).
  for cl in 0 1; do
    timeout "${BENCH_TIMEOUT:-150}" build/bench/nvfp4moe_bench_gemm --grouped --rows 8,128,512 --claim $cl \
      > "$OUT/gemm_claim_$cl.txt" 2>&1
    record "grouped decode, claim=$cl" "rc=$? (table in gemm_claim_$cl.txt)"
  done
  # The wide decode CTA (4 K warps) against the narrow one where the heuristics take it (Qwen3
  # at 8 rows), and the in-tile L2 prefetch in the layer (off since v13 on H100 evidence; 16
  # won on the H200 in v7: docs/GEMM.md v13, v14).
  for kw in 2 4; do
    timeout "${BENCH_TIMEOUT:-150}" build/bench/nvfp4moe_bench_gemm --grouped --match Qwen3 --rows 8,16 --kwarps $kw \
      > "$OUT/gemm_kwarps_$kw.txt" 2>&1
    record "grouped decode, kwarps=$kw" "rc=$? (table in gemm_kwarps_$kw.txt)"
  done
  # The ring decode kernel against the register kernel, grouped calls and the layer (v15).
  for rg in 0 1; do
    timeout "${BENCH_TIMEOUT:-150}" build/bench/nvfp4moe_bench_gemm --grouped --rows 8,64 --ring $rg \
      > "$OUT/gemm_ring_$rg.txt" 2>&1
    record "grouped decode, ring=$rg" "rc=$? (table in gemm_ring_$rg.txt)"
    NVFP4MOE_GEMM_RING=$rg timeout "${BENCH_TIMEOUT:-150}" build/nvfp4-moe bench --no-baseline \
      --tokens 1,4,16,64 > "$OUT/moe_ring_$rg.txt" 2>&1
    record "nvfp4-moe bench, ring=$rg" "rc=$? (table in moe_ring_$rg.txt)"
  done
  # The bulk-copy quantizer (docs/results/quantize.md): on by default for quantize_experts only
  # (mode 3); the kernels alone at M = 65536 with it for none (0), all calls (1) and the default,
  # and the DeepSeek-V3 layer with none and the default, twice.
  for b in 0 1 3; do
    NVFP4MOE_QUANT_BULK=$b timeout "${BENCH_TIMEOUT:-150}" build/bench/nvfp4moe_bench_quantize --m 65536 \
      > "$OUT/quant_bulk_$b.txt" 2>&1
    record "quantize M=65536, bulk=$b" "rc=$? (table in quant_bulk_$b.txt)"
  done
  for round in 1 2; do
    for b in 0 3; do
      NVFP4MOE_QUANT_BULK=$b timeout "${BENCH_TIMEOUT:-150}" build/nvfp4-moe bench --no-baseline \
        --model deepseek-v3 --tokens 1024,4096 > "$OUT/moe_bulk_${b}_$round.txt" 2>&1
      record "nvfp4-moe bench, bulk=$b ($round)" "rc=$? (table in moe_bulk_${b}_$round.txt)"
    done
  done
  # The combine fused into GEMM2 (docs/GEMM.md v17; off by default until timed) against the
  # two launches, twice.
  for round in 1 2; do
    for fc in 0 1; do
      NVFP4MOE_FUSED_COMBINE=$fc timeout "${BENCH_TIMEOUT:-150}" build/nvfp4-moe bench --no-baseline \
        --tokens 1,2,4,8,16 --iters 100 > "$OUT/moe_fused_combine_${fc}_$round.txt" 2>&1
      record "nvfp4-moe bench, fused combine=$fc ($round)" "rc=$? (table in moe_fused_combine_${fc}_$round.txt)"
    done
  done
  # The warp-specialized prefill kernel against the cp.async kernel (v18): single GEMMs, grouped
  # 8192 / 32768 rows, and the layer at T = 1024..16384.
  for ws in 0 1; do
    timeout "${BENCH_TIMEOUT:-150}" build/bench/nvfp4moe_bench_gemm --singles --ws $ws > "$OUT/gemm_singles_ws_$ws.txt" 2>&1
    record "single GEMMs, ws=$ws" "rc=$? (table in gemm_singles_ws_$ws.txt)"
    timeout "${BENCH_TIMEOUT:-150}" build/bench/nvfp4moe_bench_gemm --grouped --rows 8192,32768 --ws $ws \
      > "$OUT/gemm_grouped_ws_$ws.txt" 2>&1
    record "grouped GEMMs, ws=$ws" "rc=$? (table in gemm_grouped_ws_$ws.txt)"
    NVFP4MOE_GEMM_WS=$ws timeout "${BENCH_TIMEOUT:-150}" build/nvfp4-moe bench --no-baseline \
      --tokens 1024,4096,16384 --iters 10 > "$OUT/moe_ws_$ws.txt" 2>&1
    record "nvfp4-moe bench, ws=$ws" "rc=$? (table in moe_ws_$ws.txt)"
  done
fi

echo
for f in "$OUT"/nvfp4moe_bench_*.txt; do [[ -f "$f" ]] && { echo "== $(basename "$f")"; tail -n 40 "$f"; }; done
echo
echo "== summary ($(cat "$OUT/gpu.txt" | head -1))"
printf '%s\n' "${summary[@]}"
