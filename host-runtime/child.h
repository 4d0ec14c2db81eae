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

// Ends a `crun exec` (`runtime_pid`, our child) whose process is still running: SIGKILL to the
// process `pid_file` names, then crun is given a moment to reap it and exit (SIGKILL after that),
// and the process is reaped here if crun died first and it was re-parented to us (a subreaper).
// So no zombie of it is left for a `ps` in the container to see. Returns crun's wait status.
int EndExec(pid_t runtime_pid, const std::string& pid_file);

// The descriptor sent (SCM_RIGHTS, as crun sends a pty master to --console-socket) on the
// connected socket `conn`, close-on-exec.
absl::StatusOr<int> ReceiveDescriptor(int conn);

}  // namespace podvisor::host
