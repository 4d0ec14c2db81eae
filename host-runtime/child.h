#pragma once

// Starting the host handler's helper processes (crun, the monitor's children).

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace podvisor::host {

// Forks and execs `argv` (argv[0] an absolute path) with `stdin_fd`, `stdout_fd` and `stderr_fd`
// as its descriptors 0, 1 and 2 (-1: /dev/null) and no signal blocked. Every other descriptor of
// this process is close-on-exec, so none leaks into the child. The caller reaps it.
absl::StatusOr<pid_t> SpawnChild(const std::vector<std::string>& argv, int stdin_fd, int stdout_fd,
                                 int stderr_fd);

// The descriptor sent (SCM_RIGHTS, as crun sends a pty master to --console-socket) on the
// connected socket `conn`, close-on-exec.
absl::StatusOr<int> ReceiveDescriptor(int conn);

}  // namespace podvisor::host
