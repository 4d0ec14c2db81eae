#include "hypervisor/console_log.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/fs.h"

namespace podvisor {
namespace {

// The copying loop of the grandchild: only system calls, no allocation (it runs in a fork of a
// multi-threaded process). Returns when the writer is gone.
void CopyLoop(int pipe_fd, const char* log, const char* old_log, const char* fifo, int64_t max) {
  const int64_t half = max / 2;
  int out = ::open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  struct stat st {};
  int64_t size = (out >= 0 && ::fstat(out, &st) == 0) ? st.st_size : 0;
  char buf[16384];
  for (;;) {
    pollfd p{pipe_fd, POLLIN, 0};
    if (::poll(&p, 1, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    ssize_t n = ::read(pipe_fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;  // QEMU closed the console: the VM is gone
    const char* data = buf;
    while (n > 0) {
      if (size >= half) {
        // Keep the newest half: the current file becomes the old one.
        if (out >= 0) ::close(out);
        ::rename(log, old_log);
        out = ::open(log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
        size = 0;
      }
      const ssize_t room = static_cast<ssize_t>(half - size);
      const ssize_t chunk = n < room ? n : room;
      if (out >= 0 && ::write(out, data, static_cast<size_t>(chunk)) < 0) {
        // A full or broken disk: drop console output rather than stall the guest.
      }
      size += chunk;
      data += chunk;
      n -= chunk;
    }
  }
  if (out >= 0) ::close(out);
  ::unlink(fifo);
}

}  // namespace

absl::StatusOr<pid_t> StartConsoleLog(const std::string& log_path, int64_t max_bytes) {
  if (max_bytes < 2) return absl::InvalidArgumentError("console log cap must be at least 2 bytes");
  const std::string fifo = ConsolePipePath(log_path);
  const std::string old_log = log_path + ".1";
  ::unlink(fifo.c_str());
  if (::mkfifo(fifo.c_str(), 0600) != 0) return ErrnoStatus(absl::StrCat("mkfifo ", fifo), errno);
  // Opened before QEMU's writer exists, non-blocking: no EOF is seen until a writer came and went.
  int pipe_fd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (pipe_fd < 0) {
    absl::Status s = ErrnoStatus(absl::StrCat("open ", fifo), errno);
    ::unlink(fifo.c_str());
    return s;
  }
  // The log exists from the start (readers look for it while the guest boots).
  int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (log_fd >= 0) ::close(log_fd);
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    ::close(pipe_fd);
    ::unlink(fifo.c_str());
    return ErrnoStatus("pipe", errno);
  }
  const pid_t child = ::fork();
  if (child < 0) {
    absl::Status s = ErrnoStatus("fork console logger", errno);
    ::close(pipe_fd);
    ::close(report[0]);
    ::close(report[1]);
    ::unlink(fifo.c_str());
    return s;
  }
  if (child == 0) {
    // Intermediate: a new session, then the logger itself, which init adopts.
    ::setsid();
    const pid_t logger = ::fork();
    if (logger == 0) {
      ::signal(SIGPIPE, SIG_IGN);
      ::signal(SIGTERM, SIG_DFL);
      // Nothing of the daemon's stays open here (its sockets, its lock file): the FIFO becomes
      // fd 3, stdio /dev/null, everything else is closed.
      if (::dup2(pipe_fd, 3) != 3) ::_exit(1);
      ::close_range(4, ~0U, 0);
      int null_fd = ::open("/dev/null", O_RDWR);
      if (null_fd >= 0) {
        ::dup2(null_fd, 0);
        ::dup2(null_fd, 1);
        ::dup2(null_fd, 2);
        if (null_fd > 3) ::close(null_fd);
      }
      CopyLoop(3, log_path.c_str(), old_log.c_str(), fifo.c_str(), max_bytes);
      ::_exit(0);
    }
    (void)!::write(report[1], &logger, sizeof logger);
    ::_exit(logger > 0 ? 0 : 1);
  }
  ::close(pipe_fd);
  ::close(report[1]);
  pid_t logger = -1;
  ssize_t got = ::read(report[0], &logger, sizeof logger);
  ::close(report[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  if (got != sizeof logger || logger <= 0) {
    ::unlink(fifo.c_str());
    return absl::InternalError("console logger did not start");
  }
  return logger;
}

}  // namespace podvisor
