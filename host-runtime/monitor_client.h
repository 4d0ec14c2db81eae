#pragma once

// podvisord's side of podvisor-monitor (host-runtime/monitor.h): starting one so that it
// outlives the daemon, finding it again, and talking to its control socket.

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "host-runtime/monitor.h"

namespace podvisor::host {

struct StartedMonitor {
  pid_t monitor_pid = 0;
  pid_t container_pid = 0;  // the container's init, created and waiting for `crun start`
};

// Starts `binary` with `options` (sync_fd is chosen here) in a session of its own, re-parented
// away from the daemon (a double fork), stdin/stdout on /dev/null and stderr appended to
// <dir>/monitor.log, and waits up to `timeout` for it to report the container created. The
// monitor's own error (the runtime's complaint) is FAILED_PRECONDITION; a monitor that says
// nothing in time is DEADLINE_EXCEEDED (and is killed). Safe in a multithreaded process.
absl::StatusOr<StartedMonitor> StartMonitor(const std::string& binary, MonitorOptions options,
                                            absl::Duration timeout);

// The pid of the monitor of `dir` while it runs (its monitor.pid names a live podvisor-monitor
// of that directory); 0 otherwise.
pid_t LiveMonitor(const std::string& dir);

// Asks the monitor of `dir` to reopen its log file (ReopenContainerLog). UNAVAILABLE when no
// monitor answers (the container has exited).
absl::Status ReopenMonitorLog(const std::string& dir, absl::Duration timeout);

// An attach connection to the monitor of `dir` ("ok" read): frames follow (MonitorFrame).
absl::StatusOr<int> AttachMonitor(const std::string& dir, absl::Duration timeout);

}  // namespace podvisor::host
