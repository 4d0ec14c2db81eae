#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace podvisor::testing {

// The real podvisor-agent (from the build tree) as an ordinary child process in --no-pid1 mode,
// serving the protocol on a unix socket. Not thread-safe.
class AgentProcess {
 public:
  // `args` follow "--no-pid1"; e.g. {"--channel", "listen:/tmp/x/agent.sock", "--root", dir}.
  // `prefix` runs before the agent (e.g. {"unshare", "-n", "--"}).
  explicit AgentProcess(std::vector<std::string> args, std::vector<std::string> prefix = {},
                        std::string log_path = "");
  ~AgentProcess();  // SIGKILL if still running

  bool Start(std::string* error);
  void Kill();
  // Waits for the process to exit; returns the raw wait status, or -1 on timeout.
  int WaitExit(int timeout_ms);
  bool Running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  std::string ReadLog() const;

  static std::string BinaryPath();

 private:
  std::vector<std::string> args_;
  std::vector<std::string> prefix_;
  std::string log_path_;
  pid_t pid_ = -1;
};

}  // namespace podvisor::testing
