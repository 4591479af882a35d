// Routing, permutation and combine ops over nvfp4moe/cuda/routing.h.
//
//   route:   logits [T, E] float32|bf16 -> ids [T, k] int32, weights [T, k] float32
//   permute: ids [T, k] -> counts [E], expert_offsets [E+1], scale_offsets [E+1],
//            sorted_to_pair [T k], pair_to_sorted [T k], sorted_to_token [T k] (all int32)
//   combine: rows [>= T k, H] bf16|fp16 (expert-sorted), weights [T, k], pair_to_sorted
//            [>= T k], optional shared [T, H] -> out [T, H]
// T = 0 is allowed everywhere (permute still writes counts and offsets).
#include <ATen/ATen.h>

#include <algorithm>
#include <string>

#include "nvfp4moe/cuda/routing.h"
#include "ops.h"
#include "tensor_checks.h"

namespace nvfp4moe::torch_ext {
namespace {

RoutingConfig routing_config(int64_t num_experts, int64_t top_k, std::string_view scoring, bool renormalize,
                             int64_t n_group, int64_t topk_group, double routed_scaling_factor, const char* op) {
  RoutingConfig cfg;
  TORCH_CHECK(num_experts >= 1 && num_experts <= 512, op, ": logits: expected 1..512 experts (columns), got ",
              num_experts);
  TORCH_CHECK(top_k >= 1 && top_k <= num_experts, op, ": top_k: expected 1..E = ", num_experts, ", got ", top_k);
  cfg.num_experts = static_cast<int>(num_experts);
  cfg.top_k = static_cast<int>(top_k);
  if (scoring == "softmax") {
    cfg.scoring = ScoringFunc::kSoftmax;
  } else if (scoring == "sigmoid") {
    cfg.scoring = ScoringFunc::kSigmoid;
  } else {
    TORCH_CHECK(false, op, ": scoring: expected \"softmax\" or \"sigmoid\", got \"", std::string(scoring), "\"");
  }
  cfg.renormalize = renormalize;
  TORCH_CHECK(n_group >= 1 && n_group <= num_experts && topk_group >= 1 && topk_group <= n_group, op,
              ": n_group/topk_group: expected 1 <= topk_group <= n_group <= E, got ", n_group, "/", topk_group);
  cfg.n_group = static_cast<int>(n_group);
  cfg.topk_group = static_cast<int>(topk_group);
  cfg.routed_scaling_factor = static_cast<float>(routed_scaling_factor);
  try {
    validate(cfg);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, op, ": ", e.what());
  }
  return cfg;
}

}  // namespace

// ---- route ----
void route_out(const at::Tensor& logits, const std::optional<at::Tensor>& correction_bias, int64_t top_k,
               std::string_view scoring, bool renormalize, int64_t n_group, int64_t topk_group,
               double routed_scaling_factor, const at::Tensor& ids, const at::Tensor& weights) {
  constexpr const char* op = "nvfp4_moe.route";
  check_cuda(logits, op, "logits");
  check_dim(logits, 2, op, "logits");
  check_contiguous(logits, op, "logits");
  TORCH_CHECK(logits.scalar_type() == at::kFloat || logits.scalar_type() == at::kBFloat16, op,
              ": logits: expected dtype torch.float32 or torch.bfloat16, got ", logits.scalar_type());
  const int64_t tokens = logits.size(0);
  RoutingConfig cfg = routing_config(logits.size(1), top_k, scoring, renormalize, n_group, topk_group,
                                     routed_scaling_factor, op);
  if (correction_bias) {
    TORCH_CHECK(cfg.scoring == ScoringFunc::kSigmoid, op,
                ": correction_bias: only used with scoring=\"sigmoid\" (DeepSeek-V3), got scoring=\"softmax\"");
    check_input(*correction_bias, at::kFloat, logits, op, "correction_bias");
    TORCH_CHECK(correction_bias->dim() == 1 && correction_bias->size(0) == logits.size(1), op,
                ": correction_bias: expected shape [", logits.size(1), "], got ", correction_bias->sizes());
  }
  check_output(ids, {tokens, top_k}, at::kInt, logits, op, "ids");
  check_output(weights, {tokens, top_k}, at::kFloat, logits, op, "weights");
  if (tokens == 0) return;
  c10::cuda::CUDAGuard guard(logits.device());
  cuda::route(logits.data_ptr(),
              logits.scalar_type() == at::kFloat ? cuda::LogitsDType::kFloat32 : cuda::LogitsDType::kBF16,
              correction_bias ? correction_bias->data_ptr<float>() : nullptr, tokens, cfg, ids.data_ptr<int32_t>(),
              weights.data_ptr<float>(), current_stream());
}

std::tuple<at::Tensor, at::Tensor> route(const at::Tensor& logits, const std::optional<at::Tensor>& correction_bias,
                                         int64_t top_k, std::string_view scoring, bool renormalize, int64_t n_group,
                                         int64_t topk_group, double routed_scaling_factor) {
  check_dim(logits, 2, "nvfp4_moe.route", "logits");
  at::Tensor ids = at::empty({logits.size(0), top_k}, logits.options().dtype(at::kInt));
  at::Tensor weights = at::empty({logits.size(0), top_k}, logits.options().dtype(at::kFloat));
  route_out(logits, correction_bias, top_k, scoring, renormalize, n_group, topk_group, routed_scaling_factor, ids,
            weights);
  return {ids, weights};
}

// ---- permute ----
// The maps may be longer than T k (buffers sized for a capacity): capacity_tokens is their
// length / k.
void permute_out(const at::Tensor& ids, int64_t num_experts, const at::Tensor& counts,
                 const at::Tensor& expert_offsets, const at::Tensor& scale_offsets, const at::Tensor& sorted_to_pair,
                 const at::Tensor& pair_to_sorted, const at::Tensor& sorted_to_token) {
  constexpr const char* op = "nvfp4_moe.permute";
  check_input(ids, at::kInt, ids, op, "ids");
  check_dim(ids, 2, op, "ids");
  const int64_t tokens = ids.size(0), top_k = ids.size(1);
  TORCH_CHECK(num_experts >= 1, op, ": num_experts: expected >= 1, got ", num_experts);
  TORCH_CHECK(top_k >= 1 && top_k <= num_experts, op, ": ids: expected [T, k] with 1 <= k <= num_experts = ",
              num_experts, ", got shape ", ids.sizes());
  check_output(counts, {num_experts}, at::kInt, ids, op, "counts");
  check_output(expert_offsets, {num_experts + 1}, at::kInt, ids, op, "expert_offsets");
  check_output(scale_offsets, {num_experts + 1}, at::kInt, ids, op, "scale_offsets");
  const int64_t cap_rows = sorted_to_pair.numel();
  const std::pair<const at::Tensor*, const char*> maps[] = {
      {&sorted_to_pair, "sorted_to_pair"}, {&pair_to_sorted, "pair_to_sorted"}, {&sorted_to_token, "sorted_to_token"}};
  for (const auto& [t, name] : maps) {
    check_input(*t, at::kInt, ids, op, name);
    TORCH_CHECK(t->dim() == 1 && t->size(0) == cap_rows && cap_rows % top_k == 0 && cap_rows >= tokens * top_k, op,
                ": ", name, ": expected three 1-D maps of one length, a multiple of k = ", top_k, " and >= T k = ",
                tokens * top_k, ", got shape ", t->sizes(), " (sorted_to_pair has ", cap_rows, ")");
  }
  const int64_t capacity_tokens = cap_rows / top_k;
  c10::cuda::CUDAGuard guard(ids.device());
  const size_t ws_bytes = cuda::permute_workspace_bytes(capacity_tokens, static_cast<int>(top_k),
                                                        static_cast<int>(num_experts));
  at::Tensor ws = at::empty({static_cast<int64_t>(ws_bytes)}, ids.options().dtype(at::kByte));
  // Empty maps (capacity 0) have no storage: the kernel writes none of their entries, so any
  // valid device pointer stands in for them.
  auto map_ptr = [&](const at::Tensor& t) { return t.numel() ? t.data_ptr<int32_t>() : counts.data_ptr<int32_t>(); };
  cuda::PermuteOutputs out;
  out.counts = counts.data_ptr<int32_t>();
  out.off = expert_offsets.data_ptr<int32_t>();
  out.sf_off = scale_offsets.data_ptr<int32_t>();
  out.sorted_to_pair = map_ptr(sorted_to_pair);
  out.pair_to_sorted = map_ptr(pair_to_sorted);
  out.sorted_to_token = map_ptr(sorted_to_token);
  const int32_t* ids_ptr = ids.numel() ? ids.data_ptr<int32_t>() : counts.data_ptr<int32_t>();
  cuda::permute(ids_ptr, tokens, static_cast<int>(top_k), static_cast<int>(num_experts), capacity_tokens, out,
                ws_bytes ? ws.data_ptr() : nullptr, ws_bytes, current_stream());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> permute(const at::Tensor& ids,
                                                                                           int64_t num_experts) {
  constexpr const char* op = "nvfp4_moe.permute";
  check_dim(ids, 2, op, "ids");
  TORCH_CHECK(num_experts >= 1, op, ": num_experts: expected >= 1, got ", num_experts);
  const int64_t rows = ids.size(0) * ids.size(1);
  auto opts = ids.options().dtype(at::kInt);
  at::Tensor counts = at::empty({num_experts}, opts);
  at::Tensor off = at::empty({num_experts + 1}, opts);
  at::Tensor sf_off = at::empty({num_experts + 1}, opts);
  at::Tensor s2p = at::empty({rows}, opts);
  at::Tensor p2s = at::empty({rows}, opts);
  at::Tensor s2t = at::empty({rows}, opts);
  permute_out(ids, num_experts, counts, off, sf_off, s2p, p2s, s2t);
  return {counts, off, sf_off, s2p, p2s, s2t};
}

// ---- combine ----
void combine_out(const at::Tensor& rows, const at::Tensor& weights, const at::Tensor& pair_to_sorted,
                 const std::optional<at::Tensor>& shared, const at::Tensor& out) {
  constexpr const char* op = "nvfp4_moe.combine";
  check_cuda(rows, op, "rows");
  check_dim(rows, 2, op, "rows");
  check_contiguous(rows, op, "rows");
  const ActDType rows_dtype = act_dtype_of(rows, op, "rows");
  check_input(weights, at::kFloat, rows, op, "weights");
  check_dim(weights, 2, op, "weights");
  const int64_t tokens = weights.size(0), top_k = weights.size(1), hidden = rows.size(1);
  TORCH_CHECK(rows.size(0) >= tokens * top_k, op, ": rows: expected >= T k = ", tokens * top_k,
              " expert-sorted rows, got shape ", rows.sizes());
  check_input(pair_to_sorted, at::kInt, rows, op, "pair_to_sorted");
  TORCH_CHECK(pair_to_sorted.dim() == 1 && pair_to_sorted.size(0) >= tokens * top_k, op,
              ": pair_to_sorted: expected a 1-D map of >= T k = ", tokens * top_k, " entries, got shape ",
              pair_to_sorted.sizes());
  if (shared) {
    check_input(*shared, rows.scalar_type(), rows, op, "shared");
    TORCH_CHECK(shared->sizes() == at::IntArrayRef({tokens, hidden}), op, ": shared: expected shape [", tokens,
                ", ", hidden, "], got ", shared->sizes());
  }
  cuda::CombineOutDType od;
  switch (out.scalar_type()) {
    case at::kBFloat16: od = cuda::CombineOutDType::kBF16; break;
    case at::kHalf: od = cuda::CombineOutDType::kFP16; break;
    case at::kFloat: od = cuda::CombineOutDType::kFloat32; break;
    default: TORCH_CHECK(false, op, ": out: expected dtype bfloat16, float16 or float32, got ", out.scalar_type());
  }
  check_output(out, {tokens, hidden}, out.scalar_type(), rows, op, "out");
  if (tokens == 0) return;
  c10::cuda::CUDAGuard guard(rows.device());
  cuda::combine(rows.data_ptr(), rows_dtype, weights.data_ptr<float>(), pair_to_sorted.data_ptr<int32_t>(), tokens,
                static_cast<int>(top_k), hidden, shared ? shared->data_ptr() : nullptr, out.data_ptr(), od,
                current_stream());
}

at::Tensor combine(const at::Tensor& rows, const at::Tensor& weights, const at::Tensor& pair_to_sorted,
                   const std::optional<at::Tensor>& shared, std::optional<at::ScalarType> out_dtype) {
  constexpr const char* op = "nvfp4_moe.combine";
  check_dim(rows, 2, op, "rows");
  check_dim(weights, 2, op, "weights");
  at::Tensor out = at::empty({weights.size(0), rows.size(1)}, rows.options().dtype(out_dtype.value_or(rows.scalar_type())));
  combine_out(rows, weights, pair_to_sorted, shared, out);
  return out;
}

}  // namespace nvfp4moe::torch_ext
