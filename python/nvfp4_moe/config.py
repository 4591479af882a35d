"""The MoE keys of a HuggingFace ``config.json`` (the subset the C++ parser reads,
checkpoint/model_config.h): experts, top-k, routing function, groups, shared experts, SwiGLU limit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional


@dataclass
class MoeConfig:
    hidden_size: int
    intermediate_size: int          # one routed expert's I
    num_experts: int
    top_k: int
    scoring: str = "softmax"        # "softmax" | "sigmoid"
    renormalize: bool = True
    n_group: int = 1
    topk_group: int = 1
    routed_scaling_factor: float = 1.0
    n_shared_experts: int = 0       # DeepSeek: one shared MLP of width n_shared_experts * I
    swiglu_limit: Optional[float] = None

    @classmethod
    def from_json(cls, path: str | Path) -> "MoeConfig":
        """Read ``config.json`` (or the one inside a checkpoint directory)."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        return cls.from_dict(json.loads(path.read_text()), label=str(path))

    @classmethod
    def from_dict(cls, cfg: dict[str, Any], label: str = "config.json") -> "MoeConfig":
        if "hidden_size" not in cfg and isinstance(cfg.get("text_config"), dict):
            cfg = cfg["text_config"]

        def first(*keys: str, default: Any = None) -> Any:
            vals = [cfg[k] for k in keys if cfg.get(k) is not None]
            if len(set(map(str, vals))) > 1:
                raise ValueError(f"{label}: {' / '.join(keys)} disagree: {vals}")
            return vals[0] if vals else default

        def required(*keys: str) -> Any:
            v = first(*keys)
            if v is None:
                raise ValueError(f"{label}: missing {' | '.join(keys)}")
            return v

        model_type = cfg.get("model_type") or ""
        if cfg.get("shared_expert_intermediate_size"):
            raise ValueError(f"{label}: gated shared experts (Qwen2-MoE shared_expert_gate) are not supported "
                             "by nvfp4_moe.Nvfp4MoE")
        num_experts = required("n_routed_experts", "num_experts", "num_local_experts")
        inter_key = ("moe_intermediate_size",) if cfg.get("moe_intermediate_size") is not None else (
            "intermediate_size",)
        always_renorm = model_type in ("deepseek_v3", "mixtral", "gpt_oss")
        scoring = str(first("scoring_func", default="sigmoid" if model_type == "deepseek_v3" else "softmax"))
        n_group, topk_group = int(first("n_group", default=1)), int(first("topk_group", default=1))
        if scoring == "softmax":
            if n_group != 1 and cfg.get("topk_method") != "greedy":
                raise ValueError(f"{label}: n_group = {n_group}: grouped softmax routing (DeepSeek-V2 style) "
                                 "is not supported")
            n_group = topk_group = 1  # greedy: groups play no part
        return cls(
            hidden_size=int(required("hidden_size")),
            intermediate_size=int(required(*inter_key)),
            num_experts=int(num_experts),
            top_k=int(required("num_experts_per_tok")),
            scoring=scoring,
            renormalize=bool(first("norm_topk_prob", default=always_renorm)),
            n_group=n_group,
            topk_group=topk_group,
            routed_scaling_factor=float(first("routed_scaling_factor", default=1.0)),
            n_shared_experts=int(first("n_shared_experts", default=0)),
            swiglu_limit=first("swiglu_limit"),
        )
