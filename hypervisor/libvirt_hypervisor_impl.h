// Internal to the libvirt backend (not for other folders): the LibvirtHypervisor class, shared by
// libvirt_hypervisor.cc (domain operations), libvirt_init.cc (connecting, choosing the
// accelerator) and libvirt_processes.cc (watching, placing and ending QEMU and its helpers).
#pragma once

#include <libvirt/libvirt.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "hypervisor/domain_xml.h"
#include "hypervisor/hypervisor.h"
#include "hypervisor/libvirt_template.h"
#include "hypervisor/process_reaper.h"

namespace podvisor::libvirt_backend {

// Ids of the short-lived VMs Init boots (KVM probe, warm-up); never reported by List().
constexpr char kProbeIdPrefix[] = "probe-";

struct DomainFree {
  void operator()(virDomainPtr d) const { virDomainFree(d); }
};
using DomainRef = std::unique_ptr<virDomain, DomainFree>;

// Adds context in front of a status' message, keeping its code.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

// The calling thread's last libvirt error, as a Status.
absl::Status VirError(absl::string_view what,
                      absl::StatusCode code = absl::StatusCode::kUnavailable);

class LibvirtHypervisor final : public Hypervisor {
 public:
  explicit LibvirtHypervisor(LibvirtHypervisorOptions options) : options_(std::move(options)) {}
  void CancelInit() override { init_cancelled_.store(true); }

  ~LibvirtHypervisor() override {
    if (watcher_.joinable()) {
      {
        absl::MutexLock lock(&mu_);
        stop_watcher_ = true;
      }
      WakeWatcher();
      watcher_.join();
    }
    for (const auto& [fd, watch] : watches_) close(fd);
    if (wake_fd_ >= 0) close(wake_fd_);
    if (conn_ == nullptr) return;
    if (callback_id_ >= 0) virConnectDomainEventDeregisterAny(conn_, callback_id_);
    virConnectClose(conn_);
  }

  absl::Status Init() override;
  std::string Accelerator() const override { return domain_options_.accelerator; }
  absl::Status Create(const VmSpec& spec) override;
  absl::Status Stop(const std::string& id, absl::Duration timeout) override;
  absl::Status Destroy(const std::string& id) override;
  absl::StatusOr<VmStatus> Status(const std::string& id) override;
  absl::StatusOr<std::vector<VmInfo>> List() override;
  absl::Status Pause(const std::string& id) override;
  absl::Status Resume(const std::string& id) override;
  absl::Status AttachDisk(const std::string& id, const VmDisk& disk) override;
  absl::Status DetachDisk(const std::string& id, const std::string& disk_id) override;
  absl::StatusOr<std::vector<VmDisk>> ListDisks(const std::string& id) override;
  void SetExitCallback(VmExitCallback callback) override {
    absl::MutexLock lock(&mu_);
    exit_callback_ = std::move(callback);
  }
  absl::Status SaveTemplate(const std::string& id, const std::string& state_file) override;
  std::string Versions() const override { return conn_ != nullptr ? LibvirtVersions(conn_) : ""; }

 private:
  static int OnLifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void* opaque);
  absl::Status PrepareEmbedRoot();
  absl::Status ChooseAccelerator();
  // Boots the configured kernel with no usable init: it panics and QEMU exits once the kernel
  // reaches the init stage. Returns whether that happened within `timeout`.
  absl::StatusOr<bool> ProbeBoot(const std::string& accelerator, absl::Duration timeout);
  // Whether KVM boots a guest: the cached outcome when its key still holds (see
  // accel_probe_cache.h), else a probe boot, whose outcome is then cached. Sets `probed` when it
  // booted the probe.
  absl::StatusOr<bool> ProbeKvm(bool& probed);
  absl::StatusOr<DomainRef> Lookup(const std::string& id);
  absl::Status DestroyDomain(const std::string& id, virDomainPtr dom);
  pid_t QemuPid(const std::string& id);
  // Marks `dom`'s coming stop as ours, so that it is not reported. Keyed by UUID: the stop event
  // arrives after virDomainDestroy returns, and a later VM with the same name (transient domains
  // get a fresh UUID) must still be reported.
  void ExpectStop(virDomainPtr dom) {
    char uuid[VIR_UUID_STRING_BUFLEN];
    if (virDomainGetUUIDString(dom, uuid) != 0) return;
    absl::MutexLock lock(&mu_);
    expected_stops_.insert(uuid);
    SilenceWatchLocked(uuid);
  }

  // Exit detection. libvirt reports a dead QEMU only after the process has been reaped, which on
  // hosts whose PID 1 reaps orphans slowly takes ~2 s; a pidfd becomes readable the moment the
  // process exits. So each VM's QEMU is watched with a pidfd, and whichever of the pidfd and
  // libvirt's STOPPED event comes first reports the exit; the other is dropped.
  //
  // Since this process is a child subreaper, the watched processes are its children once libvirt's
  // daemonising parent has exited: the watcher reaps them the moment they exit, so libvirt (which
  // waits for a stopped QEMU's pid to vanish) finishes a stop in milliseconds.
  struct Watch {
    std::string id;
    std::string uuid;
    bool silenced = false;  // already reported or expected: close without reporting
    bool helper = false;    // a helper process of the VM (virtiofsd): reaped, never reported
  };
  void WatchQemu(virDomainPtr dom, const std::string& id);
  void WatchHelpers(const std::string& id, const std::string& uuid);
  // The pids of the VM's helper processes (virtiofsd), from libvirt's pid files.
  std::vector<pid_t> HelperPids(const std::string& id);
  // Moves QEMU and its helpers into the spec's cgroups, right after they started.
  absl::Status PlaceInCgroups(const VmSpec& spec);
  void AddWatch(pid_t pid, Watch watch);
  // Ends the QEMU (then the helpers) of the VM with `uuid` itself, through the pidfds of its
  // watches, and reaps them: libvirt's own destroy polls for the pid at 200 ms intervals.
  void TerminateProcesses(const std::string& uuid);
  void WatcherLoop();
  void WakeWatcher() {
    uint64_t one = 1;
    if (write(wake_fd_, &one, sizeof(one)) < 0) {
      // The counter is only a wake-up; a full counter already wakes the watcher.
    }
  }
  void SilenceWatchLocked(const std::string& uuid) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (auto& [fd, watch] : watches_) {
      if (watch.uuid == uuid) watch.silenced = true;
    }
  }

  const LibvirtHypervisorOptions options_;
  std::string uri_;
  std::string embed_root_;  // empty when talking to a libvirtd
  virConnectPtr conn_ = nullptr;
  int callback_id_ = -1;
  DomainOptions domain_options_;
  bool ready_ = false;  // Init succeeded

  absl::Mutex mu_;
  VmExitCallback exit_callback_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> expected_stops_ ABSL_GUARDED_BY(mu_);  // UUIDs we stop ourselves
  std::set<std::string> reported_ ABSL_GUARDED_BY(mu_);        // UUIDs reported from a pidfd
  std::map<int, Watch> watches_ ABSL_GUARDED_BY(mu_);          // by pidfd
  OrphanSweeper sweeper_;                                      // used by the watcher thread only
  bool stop_watcher_ ABSL_GUARDED_BY(mu_) = false;
  int wake_fd_ = -1;  // eventfd: the watch set changed or the watcher must stop
  std::thread watcher_;
  std::atomic<bool> init_cancelled_{false};  // CancelInit: probe boots stop waiting
};

}  // namespace podvisor::libvirt_backend
