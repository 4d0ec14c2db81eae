#pragma once

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"

namespace podvisor {

// Where a daemon with this state directory keeps its VM templates when hypervisor.template_dir
// is not set: on tmpfs (clones map the RAM files), one directory per state directory so that
// daemons never share or remove each other's templates.
inline std::string DefaultTemplateDir(const std::string& state_dir) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : state_dir) h = (h ^ c) * 1099511628211ull;
  return absl::StrCat("/dev/shm/podvisor-templates-", absl::Hex(h, absl::kZeroPad16));
}

}  // namespace podvisor
