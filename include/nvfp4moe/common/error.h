// The one exception type of the library, and argument checks that name what was wrong.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace nvfp4moe {

// Thrown for bad arguments, malformed files and CUDA failures. The message names the
// argument (or file) and what was expected; it is raised before anything is launched or written.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}
}  // namespace detail

// NVFP4MOE_CHECK(cond, "what", ...): throw Error("<function>: what...") when cond is false.
#define NVFP4MOE_CHECK(cond, ...)                                                      \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      throw ::nvfp4moe::Error(::nvfp4moe::detail::concat(__func__, ": ", __VA_ARGS__)); \
    }                                                                                  \
  } while (0)

}  // namespace nvfp4moe
