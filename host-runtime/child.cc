#include "host-runtime/child.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "common/fs.h"

namespace podvisor::host {

absl::StatusOr<pid_t> SpawnChild(const std::vector<std::string>& args, int stdin_fd, int stdout_fd,
                                 int stderr_fd) {
  if (args.empty()) return absl::InvalidArgumentError("no program to run");
  // Built before fork: the child only calls async-signal-safe functions.
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return ErrnoStatus("fork", errno);
  if (pid == 0) {
    const int null_fd = ::open("/dev/null", O_RDWR);
    ::dup2(stdin_fd >= 0 ? stdin_fd : null_fd, 0);
    ::dup2(stdout_fd >= 0 ? stdout_fd : null_fd, 1);
    ::dup2(stderr_fd >= 0 ? stderr_fd : null_fd, 2);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

int EndExec(pid_t runtime_pid, const std::string& pid_file) {
  pid_t target = 0;
  if (absl::StatusOr<std::string> text = ReadFile(pid_file); text.ok()) {
    int64_t pid = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &pid) && pid > 1) {
      target = static_cast<pid_t>(pid);
    }
  }
  if (target > 0) ::kill(target, SIGKILL);
  int status = 0;
  bool reaped = false;
  for (int i = 0; i < 200 && !reaped; ++i) {  // crun reaps its process and exits: 2 s at most
    pid_t r = ::waitpid(runtime_pid, &status, WNOHANG);
    reaped = r == runtime_pid || (r < 0 && errno != EINTR);
    if (!reaped) ::usleep(10 * 1000);
  }
  if (!reaped) {
    ::kill(runtime_pid, SIGKILL);
    while (::waitpid(runtime_pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  // Only ever our child if crun died before reaping it; else ECHILD, and nothing happens.
  if (target > 0) {
    for (int i = 0; i < 100 && ::waitpid(target, nullptr, WNOHANG) == 0; ++i) ::usleep(10 * 1000);
  }
  return status;
}

absl::StatusOr<int> ReceiveDescriptor(int conn) {
  char data[256];
  iovec iov{data, sizeof data};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  while ((n = ::recvmsg(conn, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
  }
  if (n < 0) return ErrnoStatus("receive a descriptor", errno);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (c == nullptr || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
      c->cmsg_len != CMSG_LEN(sizeof(int))) {
    return absl::InternalError("no descriptor was sent");
  }
  int fd;
  std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return fd;
}

}  // namespace podvisor::host
