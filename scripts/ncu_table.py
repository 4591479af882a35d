#!/usr/bin/env python3
# Compact per-kernel table from `ncu --csv --page raw` output on stdin (scripts/gpu-profile.sh
# layer): duration, DRAM bytes read, instructions per warp, grid x block, kernel name.
import csv, sys
lines = [l for l in sys.stdin if l.startswith('"')]
rows = list(csv.DictReader(lines))
for r in rows:
    if not r.get("ID", "").isdigit(): continue  # the units row
    name = r["Kernel Name"].split("(")[0].replace("void ", "").replace("nvfp4moe::kernels::", "").replace(" ", "")[:58]
    def m(k, f=1.0):
        try: return float(r[k].replace(",", "")) * f
        except Exception: return -1
    print(f'{r["ID"]:>3} {m("gpu__time_duration.sum", 1e-3):7.2f}us dram {m("dram__bytes_read.sum", 1e-6):7.2f}MB '
          f'inst/warp {m("smsp__inst_executed.sum") / max(1, m("launch__grid_size") * m("launch__block_size") / 32):7.0f} '
          f'grid {r.get("launch__grid_size","")} x {r.get("launch__block_size","")} {name}')
