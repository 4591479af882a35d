#!/usr/bin/env python3
"""Render the JSON of `nvfp4-moe bench --json FILE` as the Markdown table of docs/RESULTS.md.

    scripts/moe_bench_table.py moe_bench.json
"""
import json
import sys


def main(path: str) -> None:
    data = json.load(open(path))
    meta = data["meta"]
    print(f"Device {meta['device']} ({meta['sms']} SMs), CUDA {meta['cuda_runtime'] // 1000}."
          f"{(meta['cuda_runtime'] % 1000) // 10}, {meta['date']}, commit {meta.get('commit') or 'n/a'}; "
          f"ceilings measured in the same run: copy {meta['copy_gbs']:.0f} GB/s (read + write), "
          f"cuBLAS bf16 {meta['cublas_bf16_tflops']:.0f} TFLOP/s (8192^3).\n")
    cols = [("model", "model", "{}"), ("T", "tokens", "{}"), ("experts hit", "experts_hit", "{}"),
            ("latency us (graph)", "latency_us", "{:.1f}"), ("weight floor us", "weight_floor_us", "{:.1f}"),
            ("x weight floor", "x_weight_floor", "{:.2f}"), ("TC floor us", "tensor_core_floor_us", "{:.1f}"),
            ("x max floor", "x_max_floor", "{:.2f}"), ("bf16 TC rate", "fraction_of_bf16_tc", "{:.1%}"),
            ("bf16 cuBLAS us", "bf16_baseline_us", "{:.1f}"), ("speedup vs bf16", "speedup_vs_bf16", "{:.2f}"),
            ("fused SiLU+q us", "fused_silu_quant_us", "{:.1f}"), ("unfused us", "unfused_silu_quant_us", "{:.1f}"),
            ("fused gain", "fused_gain", "{:.2f}")]
    print("| " + " | ".join(c[0] for c in cols) + " |")
    print("|" + "---|" * len(cols))
    for r in data["rows"]:
        print("| " + " | ".join(fmt.format(r[key]) if key in r else "-" for _, key, fmt in cols) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
