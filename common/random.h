#pragma once

#include <cstddef>
#include <string>

namespace podvisor {

// `n` bytes from the kernel's CSPRNG (getrandom).
std::string RandomBytes(size_t n);

// `bytes` random bytes as lower-case hex (2 * bytes characters).
std::string RandomHex(size_t bytes);

}  // namespace podvisor
