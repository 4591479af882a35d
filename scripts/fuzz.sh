#!/usr/bin/env bash
# Fuzzes the checkpoint parsers with libFuzzer + ASan + UBSan (clang). Independent of the
# CMake/CUDA build: compiles the needed sources directly.
#
#   scripts/fuzz.sh [seconds] [safetensors|config|all]
#       default: 60 seconds of the safetensors target; corpora persist in fuzz-corpus/<target>
#
# Artifacts (crashing inputs) land in build-fuzz/; the script exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
which=${2:-safetensors}
case "$which" in safetensors|config|all) ;; *) echo "fuzz.sh: unknown target '$which'" >&2; exit 2;; esac
CXX=${CXX_FUZZ:-clang++}
command -v "$CXX" >/dev/null || { echo "fuzz.sh: $CXX not found (apt-get install clang)" >&2; exit 1; }

inc=(-Iinclude)
[[ -f .deps/include/nlohmann/json.hpp ]] && inc+=(-isystem .deps/include)
out=build-fuzz
san=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
run() {  # run <target> <corpus dirs...>
  local t=$1; shift
  mkdir -p "fuzz-corpus/$t"
  echo "fuzz.sh: running $t for ${seconds}s"
  "$out/${t}_fuzz" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$out/${t}-" -print_final_stats=1 "fuzz-corpus/$t" "$@"
}
mkdir -p "$out"
echo "fuzz.sh: compiler: $($CXX --version | head -1)"

if [[ $which == safetensors || $which == all ]]; then
  st_srcs=(src/checkpoint/safetensors_reader.cpp src/checkpoint/safetensors_writer.cpp)
  $CXX -std=c++20 -O1 "${inc[@]}" "${st_srcs[@]}" fuzz/make_seeds.cpp -o "$out/make_seeds"
  $CXX "${san[@]}" "${inc[@]}" "${st_srcs[@]}" fuzz/safetensors_fuzz.cpp -o "$out/safetensors_fuzz"
  seeds=$(mktemp -d)
  trap 'rm -rf "$seeds"' EXIT
  "$out/make_seeds" "$seeds"
  run safetensors "$seeds"
fi
if [[ $which == config || $which == all ]]; then
  cfg_srcs=(src/checkpoint/model_config.cpp src/ref/routing.cpp)
  $CXX "${san[@]}" "${inc[@]}" "${cfg_srcs[@]}" fuzz/config_fuzz.cpp -o "$out/config_fuzz"
  cfg_seeds=$(mktemp -d)
  trap 'rm -rf "${seeds:-}" "$cfg_seeds"' EXIT
  printf '%s' '{"model_type":"deepseek_v3","hidden_size":64,"moe_intermediate_size":32,"n_routed_experts":16,"num_experts_per_tok":4,"n_group":4,"topk_group":2,"routed_scaling_factor":2.5,"n_shared_experts":1,"quantization_config":{"quant_algo":"NVFP4","group_size":16,"exclude_modules":["lm_head","model.layers.*.self_attn*"]}}' > "$cfg_seeds/deepseek.json"
  printf '%s' '{"model_type":"qwen3_moe","hidden_size":64,"moe_intermediate_size":32,"num_experts":8,"num_experts_per_tok":2,"norm_topk_prob":true,"mlp_only_layers":[1],"decoder_sparse_step":1,"text_config":{}}' > "$cfg_seeds/qwen.json"
  printf '%s' '{"producer":{"name":"modelopt"},"quantization":{"quant_algo":"NVFP4","kv_cache_quant_algo":null,"group_size":16,"exclude_modules":["lm_head"]}}' > "$cfg_seeds/hf_quant.json"
  run config "$cfg_seeds"
fi
