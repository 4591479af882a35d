// The GEMM's tuning switches (cuda/gemm.h set_gemm_*(mode), host only: no GPU needed): -1, 0
// and 1 are taken; anything else throws before any state changes, with the public setter's
// name and the expected values in the message.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "nvfp4moe/common/error.h"
#include "nvfp4moe/cuda/gemm.h"

namespace {

using Setter = void (*)(int);

std::vector<std::pair<const char*, Setter>> switches() {
  namespace c = nvfp4moe::cuda;
  return {{"set_gemm_decode_ring", c::set_gemm_decode_ring},
          {"set_gemm_ws_pipeline", c::set_gemm_ws_pipeline},
          {"set_gemm_ws_staged_epilogue", c::set_gemm_ws_staged_epilogue},
          {"set_gemm_act_chunk_stores", c::set_gemm_act_chunk_stores},
          {"set_gemm_ws_single_fit", c::set_gemm_ws_single_fit},
          {"set_gemm_ws_single_persistent", c::set_gemm_ws_single_persistent},
          {"set_gemm_fused_combine", c::set_gemm_fused_combine}};
}

TEST(GemmSwitches, TakeMinusOneZeroOneAndNameTheSetterOnBadModes) {
  for (const auto& [name, set] : switches()) {
    for (int mode : {0, 1, -1}) EXPECT_NO_THROW(set(mode)) << name << " " << mode;
    for (int bad : {2, -2, 100}) {
      try {
        set(bad);
        ADD_FAILURE() << name << " took mode " << bad;
      } catch (const nvfp4moe::Error& e) {
        const std::string what = e.what();
        EXPECT_EQ(what.rfind(std::string(name) + ": mode: expected -1 (default), 0 (", 0), 0u) << what;
        EXPECT_NE(what.find("got " + std::to_string(bad)), std::string::npos) << what;
      }
    }
    set(-1);
  }
}

}  // namespace

namespace {

// The consumer-warpgroup count of the warp-specialized kernel at token tile 64 takes 0 (default),
// 2 or 4; anything else throws naming the argument and the values it takes, the setting unchanged.
TEST(GemmSwitches, WsConsumersTakeZeroTwoFour) {
  namespace c = nvfp4moe::cuda;
  for (int w : {0, 2, 4}) EXPECT_NO_THROW(c::set_gemm_ws_consumers(w)) << w;
  for (int bad : {-1, 1, 3, 8}) {
    try {
      c::set_gemm_ws_consumers(bad);
      ADD_FAILURE() << "took " << bad;
    } catch (const nvfp4moe::Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("warpgroups: expected 0 (default), 2 or 4, got " + std::to_string(bad)), std::string::npos)
          << what;
    }
  }
  c::set_gemm_ws_consumers(0);
}

}  // namespace
