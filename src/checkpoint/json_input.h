// JSON from files a user hands us (safetensors headers, config.json, the shard index): parsed
// with a nesting limit, and quoted briefly in error messages. Why the limit: nlohmann::json's
// dump() recurses once per nesting level, so quoting a value nested 100k deep in an error
// message overflowed the stack (`nvfp4-moe info` crashed on such a header); no file of ours
// nests deeper than a few levels.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "nvfp4moe/common/error.h"

namespace nvfp4moe::checkpoint_json {

using json = nlohmann::json;

inline constexpr int kMaxDepth = 32;

// Parses [begin, end); throws Error naming `label` on invalid JSON or nesting deeper than
// kMaxDepth. `on_event` (may be empty) sees every parse event first, as nlohmann's callback.
template <typename It>
json parse_bounded(It begin, It end, const std::string& label, const json::parser_callback_t& on_event = nullptr) {
  auto bounded = [&](int depth, json::parse_event_t event, json& parsed) {
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        depth >= kMaxDepth) {
      throw Error(label + ": JSON nested deeper than " + std::to_string(kMaxDepth) + " levels");
    }
    return on_event ? on_event(depth, event, parsed) : true;
  };
  try {
    return json::parse(begin, end, bounded, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    throw Error(label + ": not valid JSON: " + e.what());
  }
}

// A value for an error message: its JSON text, cut to 80 characters.
inline std::string brief(const json& v) {
  std::string s = v.dump();
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

}  // namespace nvfp4moe::checkpoint_json
