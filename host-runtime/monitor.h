#pragma once

// podvisor-monitor: the process that owns one host container's stdio, log file and exit code
// (as conmon does for CRI-O). podvisord starts it in a session of its own; it outlives podvisord
// (a restart or kill -9), so a container keeps logging, and its exit is recorded, while no
// daemon runs. See docs/runtime-handlers.md ("The monitor").
//
// The monitor makes itself a child subreaper, runs the runtime's create command (crun create)
// with the container's stdio on pipes it holds, and once the command exited reads the
// container's pid from `pid_file`: the container's init is then its child. It reports
// "created <pid>\n" (or "error <message>\n") on `sync_fd`, writes the container's output to the
// log in the CRI format, serves the control socket, and when the container's init exits writes
// `<dir>/exit.json` (atomically) and exits itself.
//
// Files in `dir`: monitor.pid (its own pid), exit.json, ctl.sock (the control socket).
// Control protocol: one line per connection, "reopen" (ReopenContainerLog: answers "ok" or
// "error <message>") or "attach" (answers "ok", then the connection carries frames both ways:
// see MonitorFrame).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace podvisor::host {

struct MonitorOptions {
  std::string id;
  std::string dir;
  // The command that creates the container and writes its init's pid to pid_file; argv[0] is
  // absolute. Its stdio are the container's.
  std::vector<std::string> create_argv;
  std::string pid_file;
  std::string log_path;  // empty: the output is read and dropped
  // The container's memory cgroup directory (cgroup v1), read for OOM kills; may be empty.
  std::string memory_cgroup;
  bool stdin = false;       // keep a stdin pipe open (written through attach)
  bool stdin_once = false;  // the first attach that closes stdin closes it for good
  // A terminal: the create command gets `--console-socket PATH` before its last argument (the
  // container id), and the pty master it sends is the container's stdin and stdout.
  bool tty = false;
  int sync_fd = -1;
};

// What the monitor recorded when the container's init exited.
struct MonitorExit {
  int32_t exit_code = 0;  // 128+signal when a signal ended it
  int32_t signal = 0;
  bool oom_killed = false;
  int64_t finished_at_ns = 0;
};

// Frames of an attach connection: a type byte, a 4-byte big-endian length, the data.
// Monitor -> client: kStdout, kStderr (data; length 0 = that stream ended), kExit (no data).
// Client -> monitor: kStdin (data; length 0 = close stdin: ^D on a terminal), kResize (a
// terminal's size: 2-byte big-endian rows, then columns; ignored without a terminal).
enum class MonitorFrame : uint8_t { kStdin = 0, kStdout = 1, kStderr = 2, kExit = 3, kResize = 4 };
inline constexpr uint32_t kMaxMonitorFrame = 64 * 1024;

// Runs the monitor; returns its process exit code. Only `main` calls this.
int RunMonitor(const MonitorOptions& options);

// Parses the monitor's command line (argv after the program name).
absl::StatusOr<MonitorOptions> ParseMonitorArgs(const std::vector<std::string>& args);
// The command line that ParseMonitorArgs reads back.
std::vector<std::string> MonitorArgs(const MonitorOptions& options);

// exit.json of a monitor directory; NOT_FOUND while the container has not exited.
absl::StatusOr<MonitorExit> ReadMonitorExit(const std::string& dir);
std::string EncodeMonitorExit(const MonitorExit& exit);

}  // namespace podvisor::host
