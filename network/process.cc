#include "network/process.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs.h"

namespace podvisor::network {
namespace {

// Error codes the child reports through the status pipe before exec.
enum ChildStep : int { kStepNetnsOpen = 1, kStepSetns = 2, kStepExec = 3, kStepDup = 4 };

const char* StepName(int step) {
  switch (step) {
    case kStepNetnsOpen:
      return "open network namespace";
    case kStepSetns:
      return "enter network namespace";
    case kStepDup:
      return "set up stdio";
    default:
      return "exec";
  }
}

// Runs in the forked child: only async-signal-safe calls until execve.
[[noreturn]] void ChildMain(int in_fd, int out_fd, int err_fd, int status_fd, const char* netns,
                            char* const* argv, char* const* envp) {
  auto fail = [status_fd](int step) {
    int msg[2] = {step, errno};
    ssize_t ignored = ::write(status_fd, msg, sizeof(msg));
    (void)ignored;
    ::_exit(127);
  };
  // The daemon ignores SIGPIPE; the program gets default dispositions and an empty mask.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigaction(SIGPIPE, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (netns != nullptr) {
    int fd = ::open(netns, O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(kStepNetnsOpen);
    if (::setns(fd, CLONE_NEWNET) != 0) fail(kStepSetns);
    ::close(fd);
  }
  if (::dup2(in_fd, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(err_fd, 2) < 0) fail(kStepDup);
  ::execve(argv[0], argv, envp);
  fail(kStepExec);
  ::_exit(127);
}

struct Pipe {
  int r = -1;
  int w = -1;
  ~Pipe() { Close(); }
  void Close() {
    if (r >= 0) ::close(r);
    if (w >= 0) ::close(w);
    r = w = -1;
  }
};

absl::Status MakePipe(Pipe& p) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoStatus("pipe", errno);
  p.r = fds[0];
  p.w = fds[1];
  return absl::OkStatus();
}

// Feeds stdin and drains stdout/stderr until both close or the deadline passes.
bool PumpIo(Pipe& in, Pipe& out, Pipe& err, const std::string& input, absl::Time deadline,
            ProcessResult& result) {
  size_t written = 0;
  if (input.empty()) {
    ::close(in.w);
    in.w = -1;
  } else {
    ::fcntl(in.w, F_SETFL, O_NONBLOCK);
  }
  char buf[16384];
  while (out.r >= 0 || err.r >= 0) {
    pollfd fds[3];
    int n = 0;
    int idx_out = -1, idx_err = -1, idx_in = -1;
    if (out.r >= 0) fds[idx_out = n++] = {out.r, POLLIN, 0};
    if (err.r >= 0) fds[idx_err = n++] = {err.r, POLLIN, 0};
    if (in.w >= 0) fds[idx_in = n++] = {in.w, POLLOUT, 0};
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    int rc = ::poll(fds, n, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return false;
    auto drain = [&](int idx, Pipe& p, std::string& into) {
      if (idx < 0 || fds[idx].revents == 0) return;
      ssize_t got = ::read(p.r, buf, sizeof(buf));
      if (got > 0) {
        into.append(buf, static_cast<size_t>(got));
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        ::close(p.r);
        p.r = -1;
      }
    };
    drain(idx_out, out, result.stdout_data);
    drain(idx_err, err, result.stderr_data);
    if (idx_in >= 0 && fds[idx_in].revents != 0) {
      ssize_t put = ::write(in.w, input.data() + written, input.size() - written);
      if (put > 0) written += static_cast<size_t>(put);
      if ((put < 0 && errno != EAGAIN && errno != EINTR) || written == input.size()) {
        ::close(in.w);
        in.w = -1;
      }
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<ProcessResult> RunProcess(const ProcessOptions& options) {
  if (options.argv.empty()) return absl::InvalidArgumentError("run process: empty argv");
  const std::string& prog = options.argv[0];
  std::vector<char*> argv, envp;
  for (const auto& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : options.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  Pipe in, out, err, status;
  for (Pipe* p : {&in, &out, &err, &status}) {
    if (absl::Status s = MakePipe(*p); !s.ok()) return s;
  }
  const char* netns = options.netns_path.empty() ? nullptr : options.netns_path.c_str();
  pid_t pid = ::fork();
  if (pid < 0) return ErrnoStatus(absl::StrCat("fork for ", prog), errno);
  if (pid == 0) ChildMain(in.r, out.w, err.w, status.w, netns, argv.data(), envp.data());

  ::close(in.r), in.r = -1;
  ::close(out.w), out.w = -1;
  ::close(err.w), err.w = -1;
  ::close(status.w), status.w = -1;
  // SIGPIPE from a child that stops reading stdin must not kill the daemon (process-wide, as
  // any daemon writing to pipes and sockets wants anyway).
  static const bool sigpipe_ignored = [] { return ::signal(SIGPIPE, SIG_IGN) != SIG_ERR; }();
  (void)sigpipe_ignored;

  ProcessResult result;
  const absl::Time deadline = absl::Now() + options.timeout;
  bool finished = PumpIo(in, out, err, options.stdin_data, deadline, result);
  if (!finished) ::kill(pid, SIGKILL);
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  int msg[2] = {0, 0};
  ssize_t got = ::read(status.r, msg, sizeof(msg));
  if (got == static_cast<ssize_t>(sizeof(msg))) {
    std::string what = absl::StrCat(StepName(msg[0]), " for ", prog);
    if (msg[0] != kStepExec) absl::StrAppend(&what, " (", options.netns_path, ")");
    return ErrnoStatus(what, msg[1]);
  }
  if (!finished) {
    return absl::DeadlineExceededError(absl::StrCat(
        prog, " did not finish within ", absl::FormatDuration(options.timeout), "; killed"));
  }
  if (WIFEXITED(wstatus)) {
    result.exit_code = WEXITSTATUS(wstatus);
  } else if (WIFSIGNALED(wstatus)) {
    result.signal = WTERMSIG(wstatus);
  }
  return result;
}

absl::StatusOr<std::string> FindExecutable(const std::string& name,
                                           const std::vector<std::string>& dirs) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
    return absl::InvalidArgumentError(absl::StrCat("invalid program name \"", name, "\""));
  }
  for (const auto& dir : dirs) {
    std::string path = absl::StrCat(dir, "/", name);
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(path.c_str(), X_OK) == 0) {
      return path;
    }
  }
  return absl::NotFoundError(
      absl::StrCat("no executable \"", name, "\" in [", absl::StrJoin(dirs, ", "), "]"));
}

}  // namespace podvisor::network
