// nvfp4-moe: run, check and prepare NVFP4 MoE layers.
//
//   nvfp4-moe run [--checkpoint DIR] [--tokens T] [--verify] ...   one layer forward
//   nvfp4-moe generate --output DIR                                the built-in layer as bf16
//   nvfp4-moe quantize --input DIR --output DIR [--calibration F]  bf16 -> ModelOpt NVFP4
//   nvfp4-moe info DIR                                             what a checkpoint holds
//   nvfp4-moe bench [--model M] [--tokens 1,16] [--json F] [--plot P]  the GPU layer table
#include <cstdio>
#include <exception>
#include <map>

#include "commands.h"
#include "nvfp4moe/common/error.h"

int main(int argc, char** argv) {
  CLI::App app{"nvfp4-moe: NVFP4 Mixture-of-Experts layers on Hopper, with a CPU golden model"};
  app.require_subcommand(1);
  std::map<CLI::App*, nvfp4moe::tool::Action> actions;
  auto add = [&](auto adder) {
    size_t before = app.get_subcommands({}).size();
    auto action = adder(app);
    actions[app.get_subcommands({})[before]] = std::move(action);
  };
  add(nvfp4moe::tool::add_run_command);
  add(nvfp4moe::tool::add_generate_command);
  add(nvfp4moe::tool::add_quantize_command);
  add(nvfp4moe::tool::add_info_command);
  add(nvfp4moe::tool::add_bench_command);
  CLI11_PARSE(app, argc, argv);
  try {
    for (auto& [sub, action] : actions) {
      if (sub->parsed()) return action();
    }
  } catch (const nvfp4moe::Error& e) {
    std::fprintf(stderr, "nvfp4-moe: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nvfp4-moe: error: %s\n", e.what());
    return 1;
  }
  return 1;
}
