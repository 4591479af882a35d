# Third-party dependencies. All come from Debian packages or PyPI, installed by
# scripts/setup.sh; headers may also be staged in .deps/ (git-ignored) so the tree can be
# built on a machine without a package registry (the GPU machine).
find_package(CUDAToolkit REQUIRED)
find_package(Threads REQUIRED)

set(NVFP4MOE_DEPS_DIR ${CMAKE_CURRENT_SOURCE_DIR}/.deps CACHE PATH "Staged third-party headers")

add_library(nvfp4moe_deps INTERFACE)

# nlohmann-json (safetensors header, config.json) and CLI11 (the tool): header-only.
find_path(NLOHMANN_JSON_INCLUDE nlohmann/json.hpp HINTS ${NVFP4MOE_DEPS_DIR}/include)
find_path(CLI11_INCLUDE CLI/CLI.hpp HINTS ${NVFP4MOE_DEPS_DIR}/include)
if(NOT NLOHMANN_JSON_INCLUDE OR NOT CLI11_INCLUDE)
  message(FATAL_ERROR "nlohmann/json.hpp or CLI/CLI.hpp not found: run scripts/setup.sh --deps-only")
endif()
target_include_directories(nvfp4moe_deps SYSTEM INTERFACE ${NLOHMANN_JSON_INCLUDE} ${CLI11_INCLUDE})
