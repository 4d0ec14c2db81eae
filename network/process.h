#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace podvisor::network {

// What a finished child process left behind.
struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;      // the terminating signal, 0 when it exited
  std::string stdout_data;
  std::string stderr_data;
};

struct ProcessOptions {
  std::vector<std::string> argv;  // argv[0] is an absolute path (no PATH search)
  std::vector<std::string> env;   // "KEY=value"; the child gets exactly these
  std::string stdin_data;
  // When set, the child joins this network namespace (a bind-mounted nsfs file) before exec.
  std::string netns_path;
  absl::Duration timeout = absl::Seconds(60);
};

// Runs a program to completion, feeding stdin and collecting stdout and stderr. A child still
// running at the deadline is killed with SIGKILL and DEADLINE_EXCEEDED is returned. Failing to
// start the program (missing file, bad netns) is an error; a non-zero exit is not.
// Thread-safe: every descriptor is close-on-exec, so parallel calls never leak pipes to each
// other's children.
absl::StatusOr<ProcessResult> RunProcess(const ProcessOptions& options);

// The first `name` found as an executable file in `dirs`, or NOT_FOUND naming all of them.
absl::StatusOr<std::string> FindExecutable(const std::string& name,
                                           const std::vector<std::string>& dirs);

}  // namespace podvisor::network
