#!/usr/bin/env python3
"""The A/Bs of scripts/gpu-quick.sh in one page: median time per variant and the ratio to the
baseline variant, from the files its `run` parts leave in $OUT/all.tgz (unpack it first).

    python3 scripts/ab_summary.py DIR

Reads, where present:
  gemm_p{0,1}.txt           nvfp4moe_bench_gemm --single, front ends as passes (0) or in the kernel (1)
  grouped_dq{0,1}.txt       grouped W4A4, act_dequant pass (0) or dequantization in the kernel (1)
  moe_{cfg}_{round}.txt     nvfp4-moe bench (W4A4) per front-end config, baseline `values`
  moe_w4a16_gather{g}_{round}.txt   nvfp4-moe bench --mode w4a16, gather pass (0) or in GEMM1 (1)
and prints decode_w2.txt and t256.txt as they are.
"""
import collections
import glob
import os
import re
import statistics
import sys

KINDS = ("W4A16", "W4A4")


def gemm_rows(path):
    """(name, kind, M, N, K) -> [us, ...] from a bench_gemm table."""
    rows = collections.defaultdict(list)
    with open(path) as f:
        for line in f:
            tok = line.split()
            kind_at = next((i for i, t in enumerate(tok) if t in KINDS), None)
            if kind_at is None or len(tok) < kind_at + 10:
                continue
            try:
                us = float(tok[kind_at + 9])
            except ValueError:
                continue
            key = (" ".join(tok[:kind_at]), tok[kind_at], tok[kind_at + 1], tok[kind_at + 2], tok[kind_at + 3])
            rows[key].append(us)
    return rows


def layer_rows(path):
    """(model, T) -> (graph_us, %bf16TC) from an nvfp4-moe bench table."""
    rows = {}
    with open(path) as f:
        for line in f:
            tok = line.split()
            if len(tok) < 11 or not re.match(r"^(deepseek|qwen)", tok[0]):
                continue
            try:
                rows[(tok[0], int(tok[1]))] = (float(tok[3]), tok[10])
            except ValueError:
                continue
    return rows


def median_by_key(tables):
    merged = collections.defaultdict(list)
    for t in tables:
        for k, v in t.items():
            merged[k].extend(v if isinstance(v, list) else [v])
    return {k: statistics.median(v) for k, v in merged.items()}


def print_ab(title, base, new, label_base, label_new):
    keys = sorted(set(base) & set(new))
    if not keys:
        return
    print(f"\n## {title}\n")
    print(f"| case | {label_base} us | {label_new} us | ratio |")
    print("|---|---|---|---|")
    for k in keys:
        name = " ".join(str(x) for x in k)
        print(f"| {name} | {base[k]:.1f} | {new[k]:.1f} | {new[k] / base[k]:.3f} |")


def layer_ab(d, pattern, variants, baseline):
    """Layer tables per variant (rounds merged by median): (model, T) -> graph_us."""
    graph = {}
    for v in variants:
        files = glob.glob(os.path.join(d, pattern.format(v=v)))
        if not files:
            continue
        per_round = [{k: [g] for k, (g, _) in layer_rows(p).items()} for p in files]
        graph[v] = median_by_key(per_round)
    if baseline not in graph:
        return
    for v in variants:
        if v != baseline and v in graph:
            print_ab(f"layer: {v} vs {baseline} (graph_us, median of rounds)", graph[baseline], graph[v], baseline, v)


def main():
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    d = sys.argv[1]
    pairs = [("gemm_p{}.txt", "singles: passes (0) vs in the kernel (1)"),
             ("grouped_dq{}.txt", "grouped W4A4: act_dequant (0) vs in the kernel (1)")]
    for pattern, title in pairs:
        a, b = (os.path.join(d, pattern.format(v)) for v in (0, 1))
        if os.path.exists(a) and os.path.exists(b):
            print_ab(title, median_by_key([gemm_rows(a)]), median_by_key([gemm_rows(b)]), "0", "1")
    layer_ab(d, "moe_{v}_[0-9]*.txt", ["values", "codes", "once"], "values")
    layer_ab(d, "moe_w4a16_gather{v}_[0-9]*.txt", ["0", "1"], "0")
    for name in ("decode_w2.txt", "t256.txt"):
        p = os.path.join(d, name)
        if os.path.exists(p):
            print(f"\n## {name}\n")
            with open(p) as f:
                print(f.read().rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
