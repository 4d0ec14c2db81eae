#include "host-runtime/monitor_client.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/fs.h"
#include "host-runtime/unix_path.h"

namespace podvisor::host {
namespace {

constexpr int kSyncFd = 3;
constexpr size_t kMaxSyncLine = 8192;

// The forked child: only async-signal-safe calls until execv.
[[noreturn]] void MonitorChild(int sync_w, int log_fd, const char* binary, char* const* argv) {
  if (::setsid() < 0) ::_exit(127);
  pid_t pid = ::fork();
  if (pid != 0) ::_exit(pid < 0 ? 127 : 0);
  int null_fd = ::open("/dev/null", O_RDWR);
  if (null_fd < 0 || ::dup2(null_fd, 0) < 0 || ::dup2(null_fd, 1) < 0 ||
      ::dup2(log_fd >= 0 ? log_fd : null_fd, 2) < 0 || ::dup2(sync_w, kSyncFd) < 0) {
    ::_exit(127);
  }
  ::syscall(SYS_close_range, kSyncFd + 1, ~0U, 0);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigaction(SIGPIPE, &dfl, nullptr);
  ::execv(binary, argv);
  ::_exit(127);
}

// Reads the monitor's one report line, up to `deadline`.
absl::StatusOr<std::string> ReadSyncLine(int fd, absl::Time deadline) {
  std::string line;
  while (line.find('\n') == std::string::npos) {
    const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left <= 0) return absl::DeadlineExceededError("monitor did not report in time");
    pollfd p{fd, POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, INT_MAX)));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) continue;
    char buf[1024];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return absl::InternalError("monitor exited without a report");
    line.append(buf, static_cast<size_t>(n));
    if (line.size() > kMaxSyncLine) return absl::InternalError("monitor report too long");
  }
  return line.substr(0, line.find('\n'));
}

}  // namespace

absl::StatusOr<StartedMonitor> StartMonitor(const std::string& binary, MonitorOptions options,
                                            absl::Duration timeout) {
  options.sync_fd = kSyncFd;
  std::vector<std::string> args = MonitorArgs(options);
  args.insert(args.begin(), binary);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int sync[2];
  if (::pipe2(sync, O_CLOEXEC) != 0) return ErrnoStatus("pipe", errno);
  const std::string log_path = options.dir + "/monitor.log";
  int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  pid_t child = ::fork();
  if (child < 0) {
    int err = errno;
    ::close(sync[0]);
    ::close(sync[1]);
    if (log_fd >= 0) ::close(log_fd);
    return ErrnoStatus("fork", err);
  }
  if (child == 0) MonitorChild(sync[1], log_fd, binary.c_str(), argv.data());
  ::close(sync[1]);
  if (log_fd >= 0) ::close(log_fd);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  absl::StatusOr<std::string> line = ReadSyncLine(sync[0], absl::Now() + timeout);
  ::close(sync[0]);
  if (!line.ok()) {
    if (pid_t pid = LiveMonitor(options.dir); pid > 0) ::kill(pid, SIGKILL);
    absl::StatusOr<std::string> log = ReadFile(log_path);
    return absl::Status(
        line.status().code(),
        absl::StrCat(
            line.status().message(),
            log.ok() && !log->empty() ? absl::StrCat(": ", absl::StripAsciiWhitespace(*log)) : ""));
  }
  if (absl::StartsWith(*line, "error ")) {
    return absl::FailedPreconditionError(line->substr(6));
  }
  int64_t pid = 0;
  if (!absl::StartsWith(*line, "created ") || !absl::SimpleAtoi(line->substr(8), &pid)) {
    return absl::InternalError(absl::StrCat("monitor said \"", *line, "\""));
  }
  StartedMonitor out;
  out.container_pid = static_cast<pid_t>(pid);
  out.monitor_pid = LiveMonitor(options.dir);
  return out;
}

pid_t LiveMonitor(const std::string& dir) {
  absl::StatusOr<std::string> text = ReadFile(dir + "/monitor.pid");
  int64_t pid = 0;
  if (!text.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &pid) || pid <= 1) {
    return 0;
  }
  // The pid may have been reused since: it is ours only if its command line names this dir.
  absl::StatusOr<std::string> cmdline = ReadFile(absl::StrCat("/proc/", pid, "/cmdline"));
  if (!cmdline.ok()) return 0;
  const std::string want = absl::StrCat(std::string("--dir\0", 6), dir, std::string("\0", 1));
  if (cmdline->find(want) == std::string::npos) return 0;
  return static_cast<pid_t>(pid);
}

absl::Status ReopenMonitorLog(const std::string& dir, absl::Duration timeout) {
  absl::StatusOr<int> fd = ConnectUnix(dir, "ctl.sock", timeout);
  if (!fd.ok()) {
    return absl::UnavailableError(absl::StrCat("monitor: ", fd.status().message()));
  }
  const std::string cmd = "reopen\n";
  std::string answer;
  if (::send(*fd, cmd.data(), cmd.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(cmd.size())) {
    char buf[512];
    ssize_t n;
    while (answer.find('\n') == std::string::npos && (n = ::recv(*fd, buf, sizeof buf, 0)) > 0) {
      answer.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(*fd);
  answer = std::string(absl::StripAsciiWhitespace(answer));
  if (answer == "ok") return absl::OkStatus();
  if (answer.empty()) return absl::UnavailableError("monitor did not answer");
  return absl::InternalError(absl::StrCat("monitor: ", absl::StripPrefix(answer, "error ")));
}

absl::StatusOr<int> AttachMonitor(const std::string& dir, absl::Duration timeout) {
  absl::StatusOr<int> fd = ConnectUnix(dir, "ctl.sock", timeout);
  if (!fd.ok()) {
    return absl::UnavailableError(absl::StrCat("monitor: ", fd.status().message()));
  }
  const std::string cmd = "attach\n";
  std::string answer;
  if (::send(*fd, cmd.data(), cmd.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(cmd.size())) {
    // Byte by byte: frames follow the answer at once.
    char c;
    while (answer.size() < 64 && ::recv(*fd, &c, 1, 0) == 1 && c != '\n') answer.push_back(c);
  }
  if (answer != "ok") {
    ::close(*fd);
    return absl::UnavailableError(absl::StrCat("monitor refused attach: ", answer));
  }
  timeval none{0, 0};
  ::setsockopt(*fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
  return *fd;
}

}  // namespace podvisor::host
