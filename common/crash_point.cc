#include "common/crash_point.h"

#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"

namespace podvisor {

void CrashPoint(absl::string_view name) {
  static const std::string* const target = [] {
    const char* value = std::getenv(kCrashPointEnv);
    return new std::string(value == nullptr ? "" : value);
  }();
  if (target->empty() || *target != name) return;
  const std::string line = absl::StrCat("podvisord: crash point ", name, " reached: exiting\n");
  (void)!::write(STDERR_FILENO, line.data(), line.size());
  ::_exit(kCrashPointExitCode);
}

}  // namespace podvisor
