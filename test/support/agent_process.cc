#include "test/support/agent_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

namespace podvisor::testing {

std::string AgentProcess::BinaryPath() {
  return std::string(PODVISOR_BIN_DIR) + "/podvisor-agent";
}

AgentProcess::AgentProcess(std::vector<std::string> args, std::vector<std::string> prefix,
                           std::string log_path)
    : args_(std::move(args)), prefix_(std::move(prefix)), log_path_(std::move(log_path)) {}

AgentProcess::~AgentProcess() { Kill(); }

bool AgentProcess::Start(std::string* error) {
  std::vector<std::string> argv = prefix_;
  argv.push_back(BinaryPath());
  argv.push_back("--no-pid1");
  argv.push_back("--verbose");
  argv.insert(argv.end(), args_.begin(), args_.end());
  pid_ = fork();
  if (pid_ < 0) {
    *error = "fork failed";
    return false;
  }
  if (pid_ == 0) {
    if (!log_path_.empty()) {
      int log = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (log >= 0) {
        dup2(log, 1);
        dup2(log, 2);
      }
    }
    std::vector<char*> a;
    for (auto& s : argv) a.push_back(s.data());
    a.push_back(nullptr);
    execvp(a[0], a.data());
    _exit(127);
  }
  return true;
}

void AgentProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

int AgentProcess::WaitExit(int timeout_ms) {
  if (pid_ <= 0) return -1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return status;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

std::string AgentProcess::ReadLog() const {
  std::ifstream in(log_path_);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace podvisor::testing
