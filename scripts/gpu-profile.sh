#!/usr/bin/env bash
# Nsight Compute profiles that the open performance questions need (docs/GEMM.md "What limits
# it now", docs/results/quantize.md "Next step"), in one command for a GPU machine. Expects the
# benchmark binaries in build/bench/ (scripts/gpu-check.sh builds them) or in $BIN. Reports
# (.ncu-rep) and their text pages go to $OUT (default ./out/profile).
#
#   scripts/gpu-profile.sh [quant] [quant_small] [quant_order] [gemm] [ws] [ws_single] [ws_mid] [ws_mid4]
#                          [decode] [layer] [prefill]
#                                                                   (default: quant gemm decode)
#
#   quant   the large-call quantizers at M = 65536, K = 7168 (bf16): quantize_experts on the bulk
#           kernel (its default) and on the row-step kernel, the fused SiLU*Mul+quantize (row-step
#           kernel) and silu_and_mul: memory tables (L1/L2 sectors per request, DRAM), warp
#           states, issue and pipe utilisation side by side (why 75-85% of copy where
#           silu_and_mul on the same walk reaches 93%; docs/results/quantize.md).
#   quant_small  the per-expert quantizer and the fused SiLU*Mul+quantize at M = 16, K = 7168
#           (E = 256): where their ~2.3 us over the one-matrix quantizer go (issue 3's under-5-us
#           target: fused 5.07 us back to back).
#   quant_order  the MoE layer's two quantizers that write GEMM-order bf16 values (DeepSeek-V3
#           T = 4096, W4A4: quantize_experts on the bulk kernel, the fused SiLU*Mul on the row-step
#           kernel; 525 and 226 us there): MIO stalls against L2 store sectors per request, before
#           any store-side change (docs/results/quantize.md, twenty-third session).
#   gemm    the cp.async wgmma kernel (NVFP4MOE_GEMM_WS=0 for the 256-row CTAs): DSV3 w13
#           M = 4096 (4 warpgroups, token tile 128) and grouped E = 256 at 4096 rows (token tile
#           32): tensor pipe, stall reasons, L2 traffic.
#   ws      the warp-specialized prefill kernel (the default for 256-row CTAs, docs/GEMM.md v18):
#           DeepSeek-V3 w2 and w13 at M = 4096 (71% / 95% of cuBLAS: where does w2 lose, the
#           epilogue or the short K?) and grouped w13 at 32768 rows: tensor pipe, stall reasons
#           per source line (SourceCounters), L2 traffic.
#   ws_single  the two single GEMMs of ws only.
#   ws_mid  the warp-specialized kernel at 32 rows per expert (grouped DeepSeek-V3 w13 and w2 at
#           8192 rows: token tile 64, MMA width 32), which streams its weights at ~65% of copy.
#   ws_mid4 the same calls on 4 consumer warpgroups (docs/GEMM.md v34, --ws-consumers 4).
#   decode  the grouped decode kernel, DeepSeek-V3 w13 / w2 at 8 rows and w13 at 512 (E = 256),
#           and w13 at 8 rows with the L2 prefetch off and at 64 atoms: memory tables (why the
#           ring's weight loads miss L2, what the loads wait for).
#   layer   every kernel of one MoE forward (graph replay, kernels one at a time, cold L2) at
#           T = 1 and 4 for both models: a compact table (duration, DRAM bytes, instructions
#           per warp, grid; scripts/ncu_table.py) on stdout, and the full sections of the
#           one-launch front end (route_permute_values) at Qwen3 T = 1, the longest of the
#           small kernels on the routed path (docs/RESULTS.md, eighth session).
#   prefill every kernel of one MoE forward at T = 4096 for both models (graph replay, kernels one
#           at a time): duration, DRAM bytes, tensor-pipe activity, grid, as CSV
#           (where the prefill layer's 9 ms go: issue 6's 75%-of-tensor-core target).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out}/profile
mkdir -p "$OUT"
what=("$@"); ((${#what[@]})) || what=(quant gemm decode)
BIN=${BIN:-build/bench}
sections=(--section SpeedOfLight --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables
          --section WarpStateStats --section SchedulerStats --section InstructionStats --section ComputeWorkloadAnalysis
          --section LaunchStats --section Occupancy --section SourceCounters)
prof() {  # name kernel-regex (on the demangled name) count binary args...
  local name=$1 regex=$2 count=$3; shift 3
  ncu --kernel-name-base demangled --kernel-name "regex:$regex" --launch-skip 2 --launch-count "$count" "${sections[@]}" -f -o "$OUT/$name" "$@" \
    > "$OUT/$name.log" 2>&1
  ncu -i "$OUT/$name.ncu-rep" --page details > "$OUT/$name.txt" 2>&1
  local rc=$?
  # The stall reasons (cycles per issued instruction, by reason): the details page gives only
  # their sum.
  ncu -i "$OUT/$name.ncu-rep" --page raw 2>&1 | grep -E 'issue_stalled_[a-z_]+_per_issue_active\.ratio' \
    | sort -k3 -g -r > "$OUT/$name.stalls.txt"
  echo "$name: rc=$rc ($(grep -c 'Section: GPU Speed Of Light' "$OUT/$name.txt") kernels) -> $OUT/$name.txt"
}
for w in "${what[@]}"; do
  case "$w" in
    quant)
      prof quant_experts_bulk 'quantize_nvfp4_bulk_kernel<__nv_bfloat16, (false|.bool.0)' 1 $BIN/nvfp4moe_bench_quantize --m 65536 --k 7168
      prof quant_experts_rows 'quantize_nvfp4_rows_kernel<__nv_bfloat16, (false|.bool.0)' 1 $BIN/nvfp4moe_bench_quantize --m 65536 --k 7168 --bulk 0
      prof quant_fused 'quantize_nvfp4_rows_kernel<__nv_bfloat16, (true|.bool.1)' 1 $BIN/nvfp4moe_bench_quantize --m 65536 --k 7168
      prof quant_silu 'silu_and_mul_kernel' 1 $BIN/nvfp4moe_bench_quantize --m 65536 --k 7168 ;;
    quant_small)
      prof quant_small_quantize 'quantize_tiles_kernel' 1 $BIN/nvfp4moe_bench_quantize --m 16 --k 7168
      prof quant_small_experts 'quantize_nvfp4_rows_kernel<__nv_bfloat16, .bool.0' 1 $BIN/nvfp4moe_bench_quantize --m 16 --k 7168
      prof quant_small_fused 'quantize_nvfp4_rows_kernel<__nv_bfloat16, .bool.1' 1 $BIN/nvfp4moe_bench_quantize --m 16 --k 7168 ;;
    gemm)
      prof gemm_w13_cp 'gemm_w4a16_sm90_kernel' 1 $BIN/nvfp4moe_bench_gemm --single 4096,4096,7168 --ws 0
      prof gemm_grouped4096_cp 'gemm_w4a16_sm90_kernel' 1 $BIN/nvfp4moe_bench_gemm --grouped --rows 4096 --hot 0 --ws 0 ;;
    ws)
      prof ws_w2_4096 'gemm_w4a16_ws_sm90_kernel' 1 $BIN/nvfp4moe_bench_gemm --single 4096,7168,2048
      prof ws_w13_4096 'gemm_w4a16_ws_sm90_kernel' 1 $BIN/nvfp4moe_bench_gemm --single 4096,4096,7168
      prof ws_grouped32768 'gemm_w4a16_ws_sm90_kernel' 1 $BIN/nvfp4moe_bench_gemm --grouped --match 'DSV3 w13' --rows 32768 ;;
    ws_mid)  # 32 rows per expert (issue 6's DeepSeek-V3 T = 1024): why ~65% of copy
      prof ws_grouped8192_w13 'gemm_w4a16_ws_sm90_kernel' 1 $BIN/nvfp4moe_bench_gemm --grouped --match 'DSV3 w13' --rows 8192
      prof ws_grouped8192_w2 'gemm_w4a16_ws_sm90_kernel' 1 $BIN/nvfp4moe_bench_gemm --grouped --match 'DSV3 w2' --rows 8192 ;;
    ws_mid4)  # ws_mid on 4 consumer warpgroups of one 64-row block each (v34)
      prof ws4_grouped8192_w13 'gemm_w4a16_ws_sm90_kernel' 1 $BIN/nvfp4moe_bench_gemm --grouped --match 'DSV3 w13' --rows 8192 --ws-consumers 4
      prof ws4_grouped8192_w2 'gemm_w4a16_ws_sm90_kernel' 1 $BIN/nvfp4moe_bench_gemm --grouped --match 'DSV3 w2' --rows 8192 --ws-consumers 4 ;;
    ws_single)  # the two single GEMMs of "ws" only (a short device call)
      prof ws_w2_4096 'gemm_w4a16_ws_sm90_kernel' 1 $BIN/nvfp4moe_bench_gemm --single 4096,7168,2048
      prof ws_w13_4096 'gemm_w4a16_ws_sm90_kernel' 1 $BIN/nvfp4moe_bench_gemm --single 4096,4096,7168 ;;
    decode)
      prof decode_w13_8rows 'gemm_w4a16_decode' 1 $BIN/nvfp4moe_bench_gemm --grouped --match 'DSV3 w13' --rows 8
      prof decode_w2_8rows 'gemm_w4a16_decode' 1 $BIN/nvfp4moe_bench_gemm --grouped --match 'DSV3 w2' --rows 8
      prof decode_w13_512rows 'gemm_w4a16_decode' 1 $BIN/nvfp4moe_bench_gemm --grouped --match 'DSV3 w13' --rows 512
      # The L2 prefetch distance at T = 1 (ncu v12: the ring's weight loads hit L2 only 32%).
      for pf in 0 64; do
        prof decode_w13_8rows_prefetch$pf 'gemm_w4a16_decode' 1 $BIN/nvfp4moe_bench_gemm --grouped --match 'DSV3 w13' --rows 8 --prefetch $pf
      done ;;
    layer)
      TOOL=${TOOL:-build/nvfp4-moe}
      for model in qwen3-30b-a3b deepseek-v3; do
        for T in 1 4; do
          echo "== layer $model T=$T (14 kernels: id, duration, DRAM read, instructions per warp, grid x block, name)"
          ncu --csv --page raw --launch-skip 40 --launch-count 14 \
            --metrics gpu__time_duration.sum,dram__bytes_read.sum,smsp__inst_executed.sum,launch__grid_size,launch__block_size \
            "$TOOL" bench --no-baseline --model $model --tokens $T --iters 5 2>/dev/null | python3 scripts/ncu_table.py
        done
      done
      prof layer_front_end 'route_permute_values' 1 "$TOOL" bench --no-baseline --model qwen3-30b-a3b --tokens 1 --iters 5 ;;
    prefill)
      TOOL=${TOOL:-build/nvfp4-moe}
      for model in deepseek-v3 qwen3-30b-a3b; do
        ncu --csv --page raw --launch-skip 40 --launch-count 24 \
          --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,launch__grid_size,launch__block_size \
          "$TOOL" bench --no-baseline --model $model --tokens 4096 --iters 3 > "$OUT/prefill_$model.csv" 2> "$OUT/prefill_$model.log"
        echo "prefill $model: rc=$? -> $OUT/prefill_$model.csv"
      done ;;
    quant_order)  # the layer's GEMM-order quantizers (the W4A4 prefill operands), full sections
      TOOL=${TOOL:-build/nvfp4-moe}
      prof quant_order_experts 'quantize_nvfp4_bulk_kernel<__nv_bfloat16, (false|.bool.0).*(true|.bool.1)>' 1 \
        "$TOOL" bench --no-baseline --model deepseek-v3 --tokens 4096 --iters 3
      prof quant_order_silu 'quantize_nvfp4_rows_kernel<__nv_bfloat16, (true|.bool.1).*(true|.bool.1)>' 1 \
        "$TOOL" bench --no-baseline --model deepseek-v3 --tokens 4096 --iters 3 ;;
    *) echo "gpu-profile: unknown part $w (quant, quant_small, quant_order, gemm, ws, ws_single, ws_mid, ws_mid4, decode, layer, prefill)" >&2; exit 2 ;;
  esac
done
