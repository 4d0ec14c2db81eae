#include "agent/reaper.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "agent/log.h"
#include "agent/sealed_exec.h"

extern char** environ;

namespace podvisor::agent {

ProcessReaper& ProcessReaper::Get() {
  static ProcessReaper* reaper = new ProcessReaper();
  return *reaper;
}

void ProcessReaper::Start() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([this] { Run(); }).detach();
}

void ProcessReaper::Run() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  for (;;) {
    for (;;) {
      int status = 0;
      pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      Deliver(pid, status);
    }
    siginfo_t info;
    timespec timeout{1, 0};  // a safety net against a lost wakeup
    sigtimedwait(&set, &info, &timeout);
  }
}

void ProcessReaper::Deliver(pid_t pid, int status) {
  ExitCallback cb;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = watchers_.find(pid);
    if (it == watchers_.end()) {
      if (unclaimed_.size() >= 4096) unclaimed_.erase(unclaimed_.begin());
      unclaimed_[pid] = status;
      cv_.notify_all();
      return;
    }
    cb = std::move(it->second);
    watchers_.erase(it);
  }
  cb(status);
}

void ProcessReaper::Watch(pid_t pid, ExitCallback cb) {
  int status = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = unclaimed_.find(pid);
    if (it == unclaimed_.end()) {
      watchers_[pid] = std::move(cb);
      return;
    }
    status = it->second;
    unclaimed_.erase(it);
  }
  cb(status);
}

int ProcessReaper::Wait(pid_t pid) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return unclaimed_.count(pid) > 0; });
  int status = unclaimed_[pid];
  unclaimed_.erase(pid);
  return status;
}

Error Spawn(const std::vector<std::string>& argv, const SpawnOptions& options, pid_t* pid_out) {
  if (argv.empty()) return Error(Code::kInvalidArgument, "empty command");
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (const std::string& e : options.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  char** env = options.env.empty() ? environ : envp.data();
  // Looked up before the fork: the child of a threaded process may not take locks.
  const int sealed = SealedExecutableFd(argv[0]);
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    if (devnull >= 0) close(devnull);
    return ErrnoError("fork", err);
  }
  if (pid == 0) {
    sigset_t set;
    sigemptyset(&set);
    sigprocmask(SIG_SETMASK, &set, nullptr);
    signal(SIGPIPE, SIG_DFL);
    if (options.new_session) setsid();
    int in = options.stdin_fd >= 0 ? options.stdin_fd : devnull;
    int out = options.stdout_fd >= 0 ? options.stdout_fd : devnull;
    int err = options.stderr_fd >= 0 ? options.stderr_fd : STDERR_FILENO;
    if (in >= 0) dup2(in, 0);
    if (out >= 0) dup2(out, 1);
    if (err != 2 && err >= 0) dup2(err, 2);
    if (sealed >= 0) execveat(sealed, "", args.data(), env, AT_EMPTY_PATH);
    execve(args[0], args.data(), env);  // no copy, or the copy would not run: the file itself
    _exit(127);
  }
  if (devnull >= 0) close(devnull);
  *pid_out = pid;
  return Error::Ok();
}

Error RunCommand(const std::vector<std::string>& argv, std::string* output) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return ErrnoError("pipe", errno);
  SpawnOptions opts;
  opts.stdout_fd = pipefd[1];
  opts.stderr_fd = pipefd[1];
  pid_t pid = 0;
  Error err = Spawn(argv, opts, &pid);
  close(pipefd[1]);
  if (!err.ok()) {
    close(pipefd[0]);
    return err.With(argv[0]);
  }
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(pipefd[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (out.size() < 65536) out.append(buf, static_cast<size_t>(n));
  }
  close(pipefd[0]);
  int status = ProcessReaper::Get().Wait(pid);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  if (output) *output = out;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Error::Ok();
  std::string how = WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                      : "signal " + std::to_string(WTERMSIG(status));
  return Error(Code::kInternal, argv[0] + " failed (" + how + "): " + out);
}

}  // namespace podvisor::agent
