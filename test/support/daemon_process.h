#pragma once

#include <sys/types.h>

#include <set>
#include <string>
#include <vector>

namespace podvisor::testing {

// The real podvisord (from the build tree) as a child process, on a socket, root and state
// directory of the test's own. Not thread-safe.
class DaemonProcess {
 public:
  struct Options {
    std::string root_dir;
    std::string state_dir;
    std::string socket_path;
    // Empty: a config of the built-in defaults except `hypervisor.accel: tcg` (no KVM probe at
    // each start: these machines cannot use KVM, and the probe costs seconds).
    std::string config_path;
    std::vector<std::string> extra_args;
    std::string log_path;  // where stderr goes; empty: <state_dir>/../podvisord.log
    std::string log_level = "debug";  // passed as --log-level; empty: the config decides
    // Passed as --metrics-address (which overrides the config); empty: the config decides.
    // Port 0 by default, so that daemons of parallel tests never compete for the default port.
    // The fields added after log_path stay after it, so that positional initialisers keep
    // their meaning.
    std::string metrics_address = "127.0.0.1:0";
  };

  explicit DaemonProcess(Options options);
  ~DaemonProcess();  // SIGKILL if still running

  // Starts the daemon and waits (up to `timeout_ms`) for its socket to accept connections.
  // Returns false, with the reason in `error`, if it exited or never listened.
  bool Start(std::string* error, int timeout_ms = 20000);
  // SIGTERM and wait; returns the exit status as from waitpid, or -1.
  int Stop(int timeout_ms = 20000);
  // SIGKILL and reap.
  void Kill();
  // Waits for the process to exit by itself; returns its exit code, or -1 on timeout.
  int WaitExit(int timeout_ms);
  bool Running() const { return pid_ > 0; }
  // The exit code once the process has been seen to exit (128+signal when killed); else -1.
  int exit_code() const { return exit_code_; }
  pid_t pid() const { return pid_; }
  std::string endpoint() const { return "unix://" + options_.socket_path; }
  std::string ReadLog() const;

  static std::string BinaryPath();
  // Sends `signal` to the running daemon.
  void Signal(int signal);

 private:
  Options options_;
  pid_t pid_ = -1;
  int exit_code_ = -1;
};

// True when a unix socket at `path` accepts a connection.
bool CanConnect(const std::string& path);

// QEMU processes (and the virtiofsd QEMU ships, /usr/lib/qemu/virtiofsd) whose command line
// mentions `dir` (a test's state directory): VMs of that test and their helpers.
std::set<pid_t> QemuProcessesUnder(const std::string& dir);

// SIGKILLs them; returns how many there were. Pods outlive podvisord by design, so a test that
// kills its daemon at a random moment (e.g. during the hypervisor's warm-up) cleans up with this.
int KillQemuUnder(const std::string& dir);

}  // namespace podvisor::testing
