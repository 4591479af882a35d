#!/usr/bin/env bash
# A short, prioritized GPU run for when device time is scarce. The binaries are built here (a CPU
# machine with nvcc) and carried over; the device only runs them. It goes part by part, the most
# important first, and after each part it packs everything measured so far into one tarball, so a
# run cut off by its time limit still returns what it finished. (scripts/gpu-check.sh is the full
# run from source.)
#
#   scripts/gpu-quick.sh stage        here: build (Release) and pack the binaries into .gl/bin.tgz
#   scripts/gpu-quick.sh run [part]   on the GPU machine: unpack and run; results go to
#                                     $OUT/all.tgz (one file: the device returns few files)
#     tests   every GPU test (4 shards), and memcheck over the warp-specialized GEMM tests
#     layer   the MoE layer tables: W4A4 with the bf16 cuBLAS baseline, W4A16 without it
#     tune    the grouped token-tile sweep (every tile, DeepSeek-V3 and Qwen3 shapes, 512-8192
#             rows), as a table (scripts/tile_sweep_table.py); then the layer at T = 64-1024 under
#             the default steps and under one other set, NVFP4MOE_GEMM_GROUPED_TOK=${STEPS:-2:8,32:64}
#     cons    the token-tile-64 warp-specialized kernel on 2 vs 4 consumer warpgroups (v34):
#             racecheck over its small cases, grouped GEMMs at 8-32 rows per expert, the skewed
#             32768-row call with its thin experts split off to tile 64, then the layer at
#             T = 64-1024, each A/B interleaved in two rounds (NVFP4MOE_GEMM_WS_CONSUMERS)
#     step    the token-tile-160 kernel's MMA widths in steps of 16 against 32 (v20: -1.4% on an
#             H200, never timed on an H100): grouped DeepSeek-V3 w13 / w2 at 32768 rows and Qwen3
#             w13 at 16384, uniform and skewed, two interleaved rounds (bench_gemm --ws-step)
#     all     (default) tests, then layer
#
# Device call: command "scripts/gpu-quick.sh run [part]", carry [".gl"] (git-ignored). Each part
# fits one 600 s call.
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
usage="usage: scripts/gpu-quick.sh stage | run [tests|layer|tune|cons|step|all]"
[[ "${1:-}" == run ]] || { echo "$usage" >&2; exit 2; }
part=${2:-all}
[[ $part == all || $part == tests || $part == layer || $part == tune || $part == cons || $part == step ]] || { echo "gpu-quick: unknown part '$part'; $usage" >&2; exit 2; }

OUT=${OUT:-$PWD/out}
R=$(mktemp -d)
mkdir -p "$OUT" build/tests build/bench
tar xzf .gl/bin.tgz -C "$R" || { echo "gpu-quick: no .gl/bin.tgz (run 'stage' first, carry .gl)" >&2; exit 1; }
for b in "${bins[@]}"; do mv "$R/$(basename "$b")" "$b"; done
save() { tar czf "$OUT/all.tgz" --exclude="*.ncu-rep" -C "$R" . ; echo "[saved after $1 at ${SECONDS} s]"; }
T=build/tests/nvfp4moe_gpu_tests
B=build/bench/nvfp4moe_bench_gemm
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$R/gpu.txt"
passed() { grep -E '^\[  (PASSED|FAILED)  \]|FAILED  \]' "$1" | head -4; }
# gemm_tagged TAG NAME SECONDS ARGS...: one bench_gemm run; its whole output appended to
# $R/NAME.log, its W4A16 / W4A4 rows prefixed with [TAG] to $R/NAME.txt and to stdout.
gemm_tagged() {
  local tag=$1 name=$2 secs=$3; shift 3
  timeout "$secs" $B "$@" > "$R/gemm_tagged.tmp" 2>&1
  cat "$R/gemm_tagged.tmp" >> "$R/$name.log"
  grep -E 'W4A' "$R/gemm_tagged.tmp" | sed "s|^|[$tag] |" | tee -a "$R/$name.txt"
}

if [[ $part == all || $part == tests ]]; then
  for i in 0 1 2 3; do
    GTEST_TOTAL_SHARDS=4 GTEST_SHARD_INDEX=$i timeout 240 $T > "$R/tests_$i.log" 2>&1 &
  done
  wait
  for i in 0 1 2 3; do passed "$R/tests_$i.log"; done
  save tests
  timeout 200 compute-sanitizer --tool memcheck $T --gtest_filter='GemmSm90.WarpSpecialized*:-GemmSm90.WarpSpecializedFourConsumers' \
    > "$R/sanitizer_memcheck.log" 2>&1
  grep -E 'ERROR SUMMARY' "$R/sanitizer_memcheck.log"
  save memcheck
fi

if [[ $part == all || $part == layer ]]; then
  for mode in w4a4 w4a16; do
    base=; [[ $mode == w4a16 ]] && base=--no-baseline  # the bf16 baseline once
    timeout 150 build/nvfp4-moe bench --mode $mode $base > "$R/layer_$mode.txt" 2>&1
    grep -E '^(model|deepseek|qwen)' "$R/layer_$mode.txt"
  done
  save layer
fi

if [[ $part == tune ]]; then
  # Every grouped tile: 16 the decode kernel, 32 the cp.async wgmma kernel, 64 with 128-row CTAs
  # the cp.async one, 64 and 128 with 256-row CTAs the warp-specialized one.
  for m in DSV3 Qwen3; do
    for knob in "" "--tok 16" "--tok 32" "--tok 64 --block-n 128" "--tok 64 --block-n 256" "--tok 128 --block-n 256"; do
      timeout 60 $B --grouped --rows 512,1024,2048,4096,8192 --match "$m" $knob > "$R/tune.tmp" 2>&1
      grep -E 'W4A16' "$R/tune.tmp" | sed "s|^|[$knob] |" >> "$R/tune_tok.txt"
    done
  done
  python3 scripts/tile_sweep_table.py "$R/tune_tok.txt" | tee "$R/tune_tok.md"
  save tune
  # The layer (W4A4, graph replay), default steps against $STEPS, two interleaved rounds.
  for round in 1 2; do
    for steps in default "${STEPS:-2:8,32:64}"; do
      env_steps=(); [[ $steps != default ]] && env_steps=(env NVFP4MOE_GEMM_GROUPED_TOK="$steps")
      "${env_steps[@]}" timeout 60 build/nvfp4-moe bench --no-baseline --tokens 64,128,256,512,1024 --iters 10 \
        > "$R/layer_steps_${steps//[:,]/_}_$round.txt" 2>&1
    done
  done
  grep -HE '^(deepseek|qwen)' "$R"/layer_steps_*.txt | sed 's|.*/layer_steps_||'
  save layer_steps
fi

if [[ $part == cons ]]; then
  timeout 150 compute-sanitizer --tool racecheck $T --gtest_filter='GemmSm90.WarpSpecializedFourConsumersSmall' \
    > "$R/sanitizer_racecheck.log" 2>&1
  grep -E 'RACECHECK SUMMARY|ERROR SUMMARY|PASSED|FAILED' "$R/sanitizer_racecheck.log" | head -4
  save racecheck
  for round in 1 2; do
    for wc in 2 4; do
      # tile 64 from 5 to 32 rows per expert: DeepSeek-V3 (E = 256) at T = 256, 1024; Qwen3 at 128, 512
      gemm_tagged "c$wc r$round" cons_gemm 60 --grouped --rows 2048,8192 --match DSV3 --ws-consumers $wc
      gemm_tagged "c$wc r$round" cons_gemm 40 --grouped --rows 1024,4096 --match Qwen3 --ws-consumers $wc
    done
  done
  save cons_gemm
  # The skewed 32768-row call (issue 4: 1.21x of balanced) with its experts of <= 32 rows split
  # off to a token-tile-64 launch (--hot 32: the rest at tile 160), on 2 and on 4 consumers.
  for knob in "" "--tok 64 --block-n 256 --hot 32 --ws-consumers 2" "--tok 64 --block-n 256 --hot 32 --ws-consumers 4"; do
    gemm_tagged "$knob" cons_skew 60 --grouped --rows 32768 --match 'DSV3 w13' $knob
  done
  save cons_skew
  for round in 1 2; do
    for wc in 2 4; do
      NVFP4MOE_GEMM_WS_CONSUMERS=$wc timeout 70 build/nvfp4-moe bench --no-baseline --tokens 64,128,256,512,1024 \
        --iters 10 > "$R/cons_layer_${wc}_$round.txt" 2>&1
      grep -E '^(deepseek|qwen)' "$R/cons_layer_${wc}_$round.txt" | sed "s|^|[c$wc r$round] |"
    done
  done
  save cons_layer
fi

if [[ $part == step ]]; then
  for round in 1 2; do
    for step in 32 16; do
      for m in "DSV3 w13" "DSV3 w2"; do
        gemm_tagged "s$step r$round" step 50 --grouped --rows 32768 --match "$m" --ws-step $step
      done
      gemm_tagged "s$step r$round" step 30 --grouped --rows 16384 --match 'Qwen3 w13' --ws-step $step
    done
    save "step round $round"
  done
fi
