#!/usr/bin/env python3
"""The grouped token-tile sweep of `scripts/gpu-quick.sh run tune` as one markdown table: per
shape and row count, each tile's time in us (tile / weight rows per CTA / pipeline in brackets),
and the fastest with its ratio to the default plan.

    python3 scripts/tile_sweep_table.py tune_tok.txt

Input lines are nvfp4moe_bench_gemm table rows prefixed with the knob in brackets ("[--tok 32] E256
DSV3 w13 unif W4A16 2048 4096 7168 32 128 cp 1 32 1789.3 ..."); "[]" is the default plan.
"""
import re
import sys

ROW = re.compile(r"\[(.*?)\]\s+(E\d+ \S+ \S+ \S+)\s+(W4A\d+)\s+(\d+)\s+\d+\s+\d+\s+(\d+\S*)\s+(\d+)\s+(\S+)"
                 r"\s+\d+\s+\d+\s+([\d.]+)")


def main(path):
    cells, knobs = {}, []
    with open(path) as f:
        for line in f:
            m = ROW.match(line)
            if not m:
                continue
            knob, shape, _kind, rows, tok, block_n, pipe, us = m.groups()
            knob = knob or "default"
            if knob not in knobs:
                knobs.append(knob)
            cells.setdefault((shape, int(rows)), {})[knob] = (float(us), f"{tok}/{block_n}/{pipe}")
    print("| shape | rows | " + " | ".join(knobs) + " | fastest (x default) |")
    print("|" + "---|" * (len(knobs) + 3))
    for (shape, rows), v in cells.items():
        best = min(v, key=lambda k: v[k][0])
        row = [f"{v[k][0]:.1f} ({v[k][1]})" if k in v else "-" for k in knobs]
        ratio = f"{v[best][0] / v['default'][0]:.3f}" if "default" in v else "-"
        print(f"| {shape} | {rows} | " + " | ".join(row) + f" | {best} ({ratio}) |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
