#include "hypervisor/process_reaper.h"

#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/fs.h"
#include "common/log.h"

namespace podvisor {
namespace {

// waitid's P_PIDFD (Linux 5.4); glibc 2.36's idtype_t does not name it.
constexpr idtype_t kPidfdIdType = static_cast<idtype_t>(3);

struct ProcStat {
  pid_t ppid = 0;
  char state = '?';
};

// The parent and state of /proc/<pid>/stat ("pid (comm) S ppid ..."; comm may hold spaces and
// parentheses, so the fields are read after the last ')').
bool ReadProcStat(pid_t pid, ProcStat& out) {
  absl::StatusOr<std::string> text = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!text.ok()) return false;
  size_t close = text->rfind(')');
  if (close == std::string::npos || close + 4 > text->size()) return false;
  out.state = (*text)[close + 2];
  int ppid = 0;
  if (std::sscanf(text->c_str() + close + 3, "%d", &ppid) != 1) return false;
  out.ppid = ppid;
  return true;
}

}  // namespace

int OpenPidfd(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

absl::Status BecomeChildSubreaper() {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
    return ErrnoStatus("prctl(PR_SET_CHILD_SUBREAPER)", errno);
  }
  return absl::OkStatus();
}

bool ReapPidfd(int pidfd) {
  siginfo_t info{};
  // WNOHANG: a process that is still running (or not our child: ECHILD) is left alone.
  while (waitid(kPidfdIdType, static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG) < 0) {
    if (errno != EINTR) return false;
  }
  return info.si_pid != 0;
}

bool WaitPidfdExit(int pidfd, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    pollfd p{pidfd, POLLIN, 0};
    int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    int rc = poll(&p, 1, static_cast<int>(std::max<int64_t>(left, 0)));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return false;
  }
}

absl::Status TerminateAndReap(int pidfd, absl::Duration grace) {
  if (syscall(SYS_pidfd_send_signal, pidfd, SIGTERM, nullptr, 0) != 0 && errno != ESRCH) {
    return ErrnoStatus("send SIGTERM", errno);
  }
  if (!WaitPidfdExit(pidfd, grace)) {
    if (syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0) != 0 && errno != ESRCH) {
      return ErrnoStatus("send SIGKILL", errno);
    }
    if (!WaitPidfdExit(pidfd, grace)) {
      return absl::DeadlineExceededError(
          absl::StrCat("still running ", absl::FormatDuration(grace), " after SIGKILL"));
    }
  }
  ReapPidfd(pidfd);
  return absl::OkStatus();
}

int OrphanSweeper::Sweep() {
  const pid_t self = getpid();
  std::set<pid_t> zombies;
  int reaped = 0;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return 0;
  while (dirent* entry = readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid) || pid <= 0) continue;
    ProcStat stat;
    if (!ReadProcStat(pid, stat) || stat.ppid != self || stat.state != 'Z') continue;
    if (!zombies_.contains(pid)) {
      zombies.insert(pid);
      continue;
    }
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      ++reaped;
      PV_LOG(kDebug) << "reaped orphaned process " << pid << " (status " << status << ")";
    }
  }
  closedir(proc);
  zombies_ = std::move(zombies);
  return reaped;
}

}  // namespace podvisor
