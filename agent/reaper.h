#pragma once

// Child processes of the agent. As PID 1 (or a child subreaper in --no-pid1 mode) the agent
// inherits every orphan of the guest; one thread reaps them all and hands each exit status to
// whoever waits for that pid. Nothing else in the agent may call wait*().

#include <sys/types.h>

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "agent/result.h"

namespace podvisor::agent {

class ProcessReaper {
 public:
  using ExitCallback = std::function<void(int wait_status)>;

  static ProcessReaper& Get();

  // Blocks SIGCHLD in the calling thread (call from main before any other thread exists) and
  // starts the reaping thread.
  void Start();

  // Calls `cb` (on the reaper thread) when `pid` exits, or right away if it already has.
  void Watch(pid_t pid, ExitCallback cb);
  // Blocks until `pid` exits; returns its wait status.
  int Wait(pid_t pid);

 private:
  void Run();
  void Deliver(pid_t pid, int status);

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<pid_t, ExitCallback> watchers_;
  std::map<pid_t, int> unclaimed_;  // exits nobody watched (yet); bounded
};

struct SpawnOptions {
  int stdin_fd = -1;   // -1: /dev/null
  int stdout_fd = -1;  // -1: /dev/null
  int stderr_fd = -1;  // -1: the agent's stderr
  std::vector<std::string> env;  // empty: the agent's environment
  bool new_session = false;
};

// fork + execv with a clean signal mask. The caller must Watch()/Wait() the pid.
Error Spawn(const std::vector<std::string>& argv, const SpawnOptions& options, pid_t* pid);

// Runs argv to completion, capturing stdout+stderr (truncated to 64 KiB). Returns an error
// naming the command and its output when it does not exit 0.
Error RunCommand(const std::vector<std::string>& argv, std::string* output = nullptr);

}  // namespace podvisor::agent
