#pragma once

// Test-only crash points: named places in multi-step operations where a test makes the daemon die
// as a kill -9 would, to prove that recovery after a restart leaves nothing behind
// (docs/reliability.md, "Crashes"). Compiled in, inert unless the environment asks.

#include "absl/strings/string_view.h"

namespace podvisor {

// The environment variable naming the one crash point that fires: PODVISOR_TEST_CRASH_AT=<name>.
inline constexpr char kCrashPointEnv[] = "PODVISOR_TEST_CRASH_AT";
// The exit status of a process that died at a crash point.
inline constexpr int kCrashPointExitCode = 86;

// When PODVISOR_TEST_CRASH_AT names `name`: writes one line to stderr and _exit()s at once, with
// no destructor, atexit handler or buffered write run (as SIGKILL would leave it). Otherwise
// nothing. The variable is read once, at the first call.
void CrashPoint(absl::string_view name);

}  // namespace podvisor
