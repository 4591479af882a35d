// Subcommands of the nvfp4-moe tool. Each registers its options on the CLI11 app and
// returns the process exit code when run.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace nvfp4moe::tool {

using Action = std::function<int()>;

Action add_run_command(CLI::App& app);
Action add_generate_command(CLI::App& app);
Action add_quantize_command(CLI::App& app);
Action add_info_command(CLI::App& app);
Action add_bench_command(CLI::App& app);

}  // namespace nvfp4moe::tool
