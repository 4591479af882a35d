// The matplotlib script `nvfp4-moe bench --plot` pipes to python3: latency vs tokens per
// model, against the weight-stream and tensor-core floors and the bf16 baseline.
#pragma once

namespace nvfp4moe::tool {

inline constexpr const char* kPlotScript = R"PY(
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
data = json.load(open(sys.argv[1]))
rows = data["rows"]
models = sorted({r["model"] for r in rows})
fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.8), squeeze=False)
for ax, model in zip(axes[0], models):
    rs = sorted((r for r in rows if r["model"] == model), key=lambda r: r["tokens"])
    t = [r["tokens"] for r in rs]
    ax.plot(t, [r["latency_us"] for r in rs], "o-", label="nvfp4-moe (graph replay)")
    if all("bf16_baseline_us" in r for r in rs):
        ax.plot(t, [r["bf16_baseline_us"] for r in rs], "s--", label="bf16 weights, cuBLAS")
    ax.plot(t, [r["weight_floor_us"] for r in rs], ":", label="weight-stream floor")
    ax.plot(t, [r["tensor_core_floor_us"] for r in rs], "-.", label="bf16 tensor-core floor")
    ax.set_xscale("log", base=2); ax.set_yscale("log")
    ax.set_xlabel("tokens"); ax.set_ylabel("latency (us)")
    ax.set_title(f"{model} ({rs[0]['mode']})")
    ax.grid(True, which="both", alpha=0.3); ax.legend(fontsize=8)
meta = data.get("meta", {})
fig.suptitle(f"{meta.get('device', '')}  {meta.get('date', '')}", fontsize=9)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=120)
print("wrote", sys.argv[2])
)PY";

}  // namespace nvfp4moe::tool
