// The libvirt backend, part 3: QEMU and its helper processes: exit detection through pidfds,
// placement in the pod's cgroups, and ending them (see the class comment on Watch).
#include <dirent.h>
#include <fcntl.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/fs.h"
#include "common/log.h"
#include "hypervisor/accel_probe_cache.h"
#include "hypervisor/console_log.h"
#include "hypervisor/domain_xml.h"
#include "hypervisor/host_support.h"
#include "hypervisor/hypervisor.h"
#include "hypervisor/libvirt_hypervisor_impl.h"
#include "hypervisor/libvirt_template.h"
#include "hypervisor/process_reaper.h"

namespace podvisor::libvirt_backend {
namespace {

// How long a destroyed VM's QEMU gets after SIGTERM before SIGKILL (it exits in milliseconds).
constexpr absl::Duration kQemuTermGrace = absl::Seconds(2);
// How long its virtiofsd gets to notice that QEMU is gone and exit by itself.
constexpr absl::Duration kVirtiofsdExitGrace = absl::Milliseconds(500);
// Interval of the backstop sweep for orphaned zombies (see OrphanSweeper).
constexpr int kOrphanSweepIntervalMs = 2000;

std::string ReasonOfStop(int detail) {
  switch (detail) {
    case VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN:
      return "shutdown";
    case VIR_DOMAIN_EVENT_STOPPED_DESTROYED:
      return "destroyed";
    case VIR_DOMAIN_EVENT_STOPPED_CRASHED:
      return "crashed";
    case VIR_DOMAIN_EVENT_STOPPED_FAILED:
      return "failed";
    case VIR_DOMAIN_EVENT_STOPPED_SAVED:
      return "saved";
    case VIR_DOMAIN_EVENT_STOPPED_MIGRATED:
      return "migrated";
    default:
      return "stopped";
  }
}

}  // namespace

void LibvirtHypervisor::WatchQemu(virDomainPtr dom, const std::string& id) {
  char uuid[VIR_UUID_STRING_BUFLEN];
  pid_t pid = QemuPid(id);
  if (pid <= 0 || virDomainGetUUIDString(dom, uuid) != 0) return;
  bool expected;
  {
    absl::MutexLock lock(&mu_);
    expected = expected_stops_.count(uuid) > 0;
  }
  AddWatch(pid, Watch{id, uuid, expected, false});
  WatchHelpers(id, uuid);
}

void LibvirtHypervisor::AddWatch(pid_t pid, Watch watch) {
  int fd = OpenPidfd(pid);
  if (fd < 0) {
    // Already gone (libvirt's event reports it) or a kernel without pidfds (< 5.3).
    PV_LOG(kDebug) << "VM " << watch.id << ": pidfd_open " << pid << ": " << strerror(errno);
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    watches_[fd] = std::move(watch);
  }
  WakeWatcher();
}

void LibvirtHypervisor::WatchHelpers(const std::string& id, const std::string& uuid) {
  for (pid_t pid : HelperPids(id)) AddWatch(pid, Watch{id, uuid, true, true});
}

absl::Status LibvirtHypervisor::PlaceInCgroups(const VmSpec& spec) {
  std::vector<pid_t> pids = HelperPids(spec.id);
  pids.push_back(QemuPid(spec.id));
  for (pid_t pid : pids) {
    if (absl::Status s = MoveToCgroups(pid, spec.cgroup_dirs); !s.ok()) {
      return Annotate(s, "place the VM in its cgroup");
    }
  }
  return absl::OkStatus();
}

std::vector<pid_t> LibvirtHypervisor::HelperPids(const std::string& id) {
  // libvirt names a virtiofsd's pid file <short domain name>-<device alias>-fs.pid, the short
  // name being "<domain number>-<first 20 characters of the name>".
  std::string run_dir = embed_root_.empty() ? "/run/libvirt/qemu" : embed_root_ + "/run/qemu";
  std::string name = DomainName(id).substr(0, 20);
  std::vector<pid_t> pids;
  std::vector<std::string> entries;
  if (DIR* dir = opendir(run_dir.c_str()); dir != nullptr) {
    while (dirent* e = readdir(dir)) entries.emplace_back(e->d_name);
    closedir(dir);
  }
  for (const std::string& entry : entries) {
    size_t dash = entry.find('-');
    if (!absl::EndsWith(entry, "-fs.pid") || dash == std::string::npos ||
        entry.compare(dash + 1, name.size(), name) != 0) {
      continue;
    }
    auto text = ReadFile(absl::StrCat(run_dir, "/", entry));
    int pid = 0;
    if (text.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &pid) && pid > 0) {
      pids.push_back(pid);
    }
  }
  return pids;
}

void LibvirtHypervisor::TerminateProcesses(const std::string& uuid) {
  std::vector<std::pair<int, bool>> fds;  // dup'd pidfd, helper?
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [fd, watch] : watches_) {
      if (watch.uuid != uuid) continue;
      int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
      if (copy >= 0) fds.emplace_back(copy, watch.helper);
    }
  }
  // QEMU first: its helpers exit by themselves once it has gone.
  std::stable_partition(fds.begin(), fds.end(), [](const auto& f) { return !f.second; });
  for (const auto& [fd, helper] : fds) {
    if (helper && WaitPidfdExit(fd, kVirtiofsdExitGrace)) {
      ReapPidfd(fd);
    } else if (absl::Status s = TerminateAndReap(fd, kQemuTermGrace); !s.ok()) {
      PV_LOG(kWarning) << "terminate VM process: " << s.message();
    }
    close(fd);
  }
}

void LibvirtHypervisor::WatcherLoop() {
  for (;;) {
    std::vector<pollfd> fds;
    {
      absl::MutexLock lock(&mu_);
      if (stop_watcher_) return;
      fds.push_back({wake_fd_, POLLIN, 0});
      for (const auto& [fd, watch] : watches_) fds.push_back({fd, POLLIN, 0});
    }
    int ready = poll(fds.data(), fds.size(), kOrphanSweepIntervalMs);
    if (ready == 0) {
      sweeper_.Sweep();
      continue;
    }
    if (ready < 0) {
      if (errno != EINTR) {
        PV_LOG(kError) << "VM exit watcher: poll: " << strerror(errno);
      }
      continue;
    }
    if (fds[0].revents != 0) {
      uint64_t count;
      if (read(wake_fd_, &count, sizeof(count)) < 0) {
        // Nothing to do: a spurious wake-up just rebuilds the poll set.
      }
    }
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      VmExitCallback callback;
      VmExitEvent exit;
      {
        absl::MutexLock lock(&mu_);
        auto it = watches_.find(fds[i].fd);
        if (it == watches_.end()) continue;
        Watch watch = std::move(it->second);
        watches_.erase(it);
        ReapPidfd(fds[i].fd);
        close(fds[i].fd);
        if (watch.helper || watch.silenced || expected_stops_.count(watch.uuid) > 0) continue;
        reported_.insert(watch.uuid);
        callback = exit_callback_;
        exit = VmExitEvent{watch.id, "exited"};
      }
      PV_LOG(kInfo) << "VM " << exit.id << " stopped: QEMU exited";
      if (callback) callback(exit);
    }
  }
}

int LibvirtHypervisor::OnLifecycle(virConnectPtr, virDomainPtr dom, int event, int detail,
                                   void* opaque) {
  if (event != VIR_DOMAIN_EVENT_STOPPED) return 0;
  auto* self = static_cast<LibvirtHypervisor*>(opaque);
  const char* name = virDomainGetName(dom);
  if (name == nullptr || !absl::StartsWith(name, kVmNamePrefix)) return 0;
  VmExitEvent exit{std::string(name).substr(strlen(kVmNamePrefix)), ReasonOfStop(detail)};
  char uuid[VIR_UUID_STRING_BUFLEN] = "";
  virDomainGetUUIDString(dom, uuid);
  VmExitCallback callback;
  {
    absl::MutexLock lock(&self->mu_);
    self->SilenceWatchLocked(uuid);
    if (self->expected_stops_.erase(uuid) > 0) return 0;
    if (self->reported_.erase(uuid) > 0) return 0;  // the pidfd was faster
    callback = self->exit_callback_;
  }
  PV_LOG(kInfo) << "VM " << exit.id << " stopped: " << exit.reason;
  if (callback) callback(exit);
  return 0;
}

}  // namespace podvisor::libvirt_backend
