#include "host-runtime/pod_namespaces.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/fs.h"

namespace podvisor::host {
namespace {

constexpr const char* kTypes[] = {"ipc", "uts", "pid"};

void NoOp(int) {}

// PID 1 of the pod (or just the keeper of its namespaces): reaps whatever is re-parented to it.
[[noreturn]] void HolderMain() {
  ::syscall(SYS_close_range, 0, ~0U, 0);
  ::prctl(PR_SET_NAME, "podvisor-pod", 0, 0, 0);
  struct sigaction sa {};
  sa.sa_handler = NoOp;
  ::sigaction(SIGCHLD, &sa, nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (;;) {
    if (::waitpid(-1, nullptr, 0) < 0 && errno == ECHILD) ::pause();
  }
}

// The forked child: async-signal-safe calls only. Reports the holder's pid (or -errno).
[[noreturn]] void ForkHolder(int report, int flags, const char* hostname, size_t hostname_len) {
  auto fail = [report]() {
    int64_t v = -errno;
    ssize_t n = ::write(report, &v, sizeof v);
    (void)n;
    ::_exit(1);
  };
  if (::setsid() < 0) fail();
  if (::unshare(flags) != 0) fail();
  if ((flags & CLONE_NEWUTS) && hostname_len > 0 && ::sethostname(hostname, hostname_len) != 0) {
    fail();
  }
  pid_t pid = ::fork();
  if (pid < 0) fail();
  if (pid == 0) HolderMain();
  int64_t v = pid;
  ssize_t n = ::write(report, &v, sizeof v);
  (void)n;
  ::_exit(0);
}

bool SameFile(const std::string& a, const std::string& b) {
  struct stat sa {
  }, sb{};
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

}  // namespace

absl::StatusOr<PodNamespaces> CreatePodNamespaces(const PodNamespaceRequest& r) {
  PodNamespaces out;
  int flags = (r.ipc ? CLONE_NEWIPC : 0) | (r.uts ? CLONE_NEWUTS : 0) | (r.pid ? CLONE_NEWPID : 0);
  if (flags == 0) return out;
  if (r.hostname.size() > 64) return absl::InvalidArgumentError("hostname is too long");
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) return ErrnoStatus("pipe", errno);
  pid_t child = ::fork();
  if (child < 0) {
    int err = errno;
    ::close(report[0]);
    ::close(report[1]);
    return ErrnoStatus("fork", err);
  }
  if (child == 0) ForkHolder(report[1], flags, r.hostname.data(), r.hostname.size());
  ::close(report[1]);
  int64_t v = 0;
  ssize_t n;
  while ((n = ::read(report[0], &v, sizeof v)) < 0 && errno == EINTR) {
  }
  ::close(report[0]);
  while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
  }
  if (n != sizeof v) return absl::InternalError("namespace holder did not report");
  if (v <= 0) return ErrnoStatus("create the pod's namespaces", static_cast<int>(-v));
  out.holder = static_cast<pid_t>(v);
  absl::Cleanup undo = [&] { (void)ReleasePodNamespaces(r.dir); };
  if (absl::Status s = WriteFileAtomic(r.dir + "/holder.pid", absl::StrCat(out.holder, "\n"));
      !s.ok()) {
    ::kill(out.holder, SIGKILL);
    return s;
  }
  for (const char* type : kTypes) {
    const bool want = (std::strcmp(type, "ipc") == 0 && r.ipc) ||
                      (std::strcmp(type, "uts") == 0 && r.uts) ||
                      (std::strcmp(type, "pid") == 0 && r.pid);
    if (!want) continue;
    const std::string target = absl::StrCat(r.dir, "/", type);
    const std::string source = absl::StrCat("/proc/", out.holder, "/ns/", type);
    int fd = ::open(target.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0400);
    if (fd < 0) return ErrnoStatus(absl::StrCat("create ", target), errno);
    ::close(fd);
    if (::mount(source.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      return ErrnoStatus(absl::StrCat("bind ", source, " at ", target), errno);
    }
    out.paths[type] = target;
  }
  std::move(undo).Cancel();
  return out;
}

pid_t LiveHolder(const std::string& dir) {
  absl::StatusOr<std::string> text = ReadFile(dir + "/holder.pid");
  int64_t pid = 0;
  if (!text.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &pid) || pid <= 1) {
    return 0;
  }
  for (const char* type : kTypes) {
    const std::string file = absl::StrCat(dir, "/", type);
    if (::access(file.c_str(), F_OK) != 0) continue;
    if (SameFile(absl::StrCat("/proc/", pid, "/ns/", type), file)) return static_cast<pid_t>(pid);
    return 0;
  }
  return 0;
}

absl::Status ReleasePodNamespaces(const std::string& dir) {
  if (pid_t holder = LiveHolder(dir); holder > 0) ::kill(holder, SIGKILL);
  for (const char* type : kTypes) {
    const std::string file = absl::StrCat(dir, "/", type);
    if (::umount2(file.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
      return ErrnoStatus(absl::StrCat("unmount ", file), errno);
    }
    ::unlink(file.c_str());
  }
  ::unlink((dir + "/holder.pid").c_str());
  return absl::OkStatus();
}

}  // namespace podvisor::host
