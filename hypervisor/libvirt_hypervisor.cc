// The libvirt backend of Hypervisor: transient QEMU domains (microvm, direct kernel boot), by
// default through libvirt's QEMU driver embedded in this process (qemu:///embed). See
// docs/hypervisor.md for the choices and their measurements.
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
#include "hypervisor/console_log.h"
#include "hypervisor/accel_probe_cache.h"
#include "hypervisor/domain_xml.h"
#include "hypervisor/host_support.h"
#include "hypervisor/hypervisor.h"
#include "hypervisor/process_reaper.h"
#include "hypervisor/libvirt_template.h"

namespace podvisor {
namespace {

// qemu.conf of the embedded driver: run QEMU as root without per-VM sandboxing (the VM is the
// sandbox), skip namespaces/cgroups/owner tracking that cost time on every create, and let QEMU
// write its stdio to a file instead of through a libvirt pipe.
constexpr char kQemuConf[] =
    "# Written by podvisord; see docs/hypervisor.md.\n"
    "user = \"root\"\n"
    "group = \"root\"\n"
    "security_driver = \"none\"\n"
    "namespaces = [ ]\n"
    "cgroup_controllers = [ ]\n"
    "remember_owner = 0\n"
    "stdio_handler = \"file\"\n";

// Adds context in front of a status' message, keeping its code.
absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

constexpr absl::Duration kDetachTimeout = absl::Seconds(20);
// How long a destroyed VM's QEMU gets after SIGTERM before SIGKILL (it exits in milliseconds).
constexpr absl::Duration kQemuTermGrace = absl::Seconds(2);
// How long its virtiofsd gets to notice that QEMU is gone and exit by itself.
constexpr absl::Duration kVirtiofsdExitGrace = absl::Milliseconds(500);
// Interval of the backstop sweep for orphaned zombies (see OrphanSweeper).
constexpr int kOrphanSweepIntervalMs = 2000;
// Saving a template writes ~60 KB; restoring a clone reads it. Generous for a loaded host.
constexpr absl::Duration kTemplateStateTimeout = absl::Seconds(30);

// Ids of the short-lived VMs Init boots (KVM probe, warm-up); never reported by List().
constexpr char kProbeIdPrefix[] = "probe-";

struct DomainFree {
  void operator()(virDomainPtr d) const { virDomainFree(d); }
};
using DomainRef = std::unique_ptr<virDomain, DomainFree>;

// The calling thread's last libvirt error, as a Status.
absl::Status VirError(absl::string_view what,
                      absl::StatusCode code = absl::StatusCode::kUnavailable) {
  virErrorPtr err = virGetLastError();
  std::string message = err != nullptr && err->message != nullptr ? err->message
                                                                   : "unknown libvirt error";
  if (err != nullptr && err->code == VIR_ERR_NO_DOMAIN) code = absl::StatusCode::kNotFound;
  if (err != nullptr && err->code == VIR_ERR_OPERATION_INVALID &&
      code == absl::StatusCode::kUnavailable) {
    code = absl::StatusCode::kFailedPrecondition;
  }
  return absl::Status(code, absl::StrCat(what, ": ", message));
}

bool LastErrorIsNoDomain() {
  virErrorPtr err = virGetLastError();
  return err != nullptr && err->code == VIR_ERR_NO_DOMAIN;
}

// libvirt's embedded driver needs an event loop in the process; it is process-wide and lives as
// long as the process.
void EnsureEventLoop() {
  static std::once_flag once;
  std::call_once(once, [] {
    virEventRegisterDefaultImpl();
    std::thread([] {
      for (;;) {
        if (virEventRunDefaultImpl() < 0) {
          PV_LOG(kError) << "libvirt event loop: " << virGetLastErrorMessage();
          absl::SleepFor(absl::Milliseconds(100));
        }
      }
    }).detach();
  });
}

std::string ReasonOfStop(int detail) {
  switch (detail) {
    case VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: return "shutdown";
    case VIR_DOMAIN_EVENT_STOPPED_DESTROYED: return "destroyed";
    case VIR_DOMAIN_EVENT_STOPPED_CRASHED: return "crashed";
    case VIR_DOMAIN_EVENT_STOPPED_FAILED: return "failed";
    case VIR_DOMAIN_EVENT_STOPPED_SAVED: return "saved";
    case VIR_DOMAIN_EVENT_STOPPED_MIGRATED: return "migrated";
    default: return "stopped";
  }
}

// The agent socket path recorded in a domain's XML (the bind-mode unix channel).
std::string AgentSocketOf(virDomainPtr dom) {
  char* xml = virDomainGetXMLDesc(dom, 0);
  if (xml == nullptr) return "";
  std::string desc(xml);
  free(xml);
  const std::string kMarker = "<source mode='bind' path='";
  size_t start = desc.find(kMarker);
  if (start == std::string::npos) return "";
  start += kMarker.size();
  size_t end = desc.find('\'', start);
  return end == std::string::npos ? "" : desc.substr(start, end - start);
}

class LibvirtHypervisor final : public Hypervisor {
 public:
  explicit LibvirtHypervisor(LibvirtHypervisorOptions options) : options_(std::move(options)) {}

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
  void SetExitCallback(VmExitCallback callback) override {
    absl::MutexLock lock(&mu_);
    exit_callback_ = std::move(callback);
  }
  absl::Status SaveTemplate(const std::string& id, const std::string& state_file) override;
  std::string Versions() const override {
    return conn_ != nullptr ? LibvirtVersions(conn_) : "";
  }

 private:
  static int OnLifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail,
                         void* opaque);
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
  std::set<std::string> reported_ ABSL_GUARDED_BY(mu_);  // UUIDs reported from a pidfd
  std::map<int, Watch> watches_ ABSL_GUARDED_BY(mu_);    // by pidfd
  OrphanSweeper sweeper_;                                // used by the watcher thread only
  bool stop_watcher_ ABSL_GUARDED_BY(mu_) = false;
  int wake_fd_ = -1;  // eventfd: the watch set changed or the watcher must stop
  std::thread watcher_;
};

absl::Status LibvirtHypervisor::PrepareEmbedRoot() {
  if (auto s = MakeDirs(embed_root_ + "/etc", 0700); !s.ok()) return s;
  std::string conf_path = embed_root_ + "/etc/qemu.conf";
  const std::string conf = absl::StrCat(kQemuConf, QemuSandboxConf(options_.qemu_sandbox));
  auto current = ReadFile(conf_path);
  if (current.ok() && *current == conf) return absl::OkStatus();
  return WriteFileAtomic(conf_path, conf, 0600);
}

namespace {

// The first initialisation takes seconds: say what it is doing, and since when.
void LogInitStep(absl::string_view step, absl::Time start) {
  PV_LOG(kInfo) << "hypervisor init (+" << absl::ToInt64Milliseconds(absl::Now() - start)
                << " ms): " << step;
}

}  // namespace

absl::Status LibvirtHypervisor::Init() {
  if (ready_) return absl::OkStatus();
  if (conn_ != nullptr) {
    return absl::FailedPreconditionError("libvirt hypervisor: an earlier Init failed half-way");
  }
  uri_ = options_.uri;
  if (uri_.empty()) {
    if (options_.embed_root.empty()) {
      return absl::InvalidArgumentError("libvirt hypervisor: neither uri nor embed_root set");
    }
    uri_ = absl::StrCat("qemu:///embed?root=", options_.embed_root);
  }
  if (absl::StartsWith(uri_, "qemu:///embed?root=")) {
    embed_root_ = uri_.substr(strlen("qemu:///embed?root="));
  }
  absl::Time start = absl::Now();
  LogInitStep("checking the libvirt-qemu user and preparing libvirt's root", start);
  if (auto s = EnsureQemuUser(); !s.ok()) return Annotate(s, "libvirt-qemu user");
  if (!embed_root_.empty()) {
    if (auto s = PrepareEmbedRoot(); !s.ok()) return Annotate(s, "libvirt embed root");
  }
  // libvirt logs warnings (e.g. "tainted: high-privileges" on every create) and every error
  // (including expected ones such as a lookup of a missing VM) to stderr by default. We report
  // errors through Status; libvirt's own log goes to a file in the embed root. Must be set before
  // the first libvirt call of the process.
  if (!embed_root_.empty()) {
    setenv("LIBVIRT_LOG_OUTPUTS", absl::StrCat("4:file:", embed_root_, "/libvirt.log").c_str(), 0);
  }
  virSetErrorFunc(nullptr, [](void*, virErrorPtr) {});
  if (!embed_root_.empty()) {
    // The embedded driver's QEMUs become our children (see process_reaper.h).
    if (auto s = BecomeChildSubreaper(); !s.ok()) return Annotate(s, "own the VM processes");
  }
  EnsureEventLoop();
  LogInitStep(absl::StrCat("connecting to ", uri_,
                           " (a first connection probes QEMU's capabilities: seconds)"),
              start);
  conn_ = virConnectOpen(uri_.c_str());
  if (conn_ == nullptr) return VirError(absl::StrCat("connect to ", uri_));
  LogInitStep("connected; finding VMs that outlived a daemon restart", start);
  callback_id_ = virConnectDomainEventRegisterAny(
      conn_, nullptr, VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_EVENT_CALLBACK(&OnLifecycle),
      this, nullptr);
  if (callback_id_ < 0) return VirError("register domain lifecycle events");
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) return ErrnoStatus("eventfd", errno);
  watcher_ = std::thread([this] { WatcherLoop(); });
  // VMs still running from before a restart of the daemon.
  if (auto vms = List(); vms.ok()) {
    for (const VmInfo& vm : *vms) {
      if (auto dom = Lookup(vm.id); dom.ok()) WatchQemu(dom->get(), vm.id);
    }
  }

  domain_options_.emulator = options_.emulator;
  domain_options_.virtiofsd = options_.virtiofsd;
  domain_options_.guest_mitigations = options_.guest_mitigations;
  domain_options_.console_log_max_bytes = options_.console_log_max_bytes;
  domain_options_.tsc_khz = options_.tsc_khz != 0 ? options_.tsc_khz : ReadHostTscKhz();
  if (domain_options_.tsc_khz == 0) {
    PV_LOG(kWarning) << "host TSC frequency unknown: guests boot without tsc_early_khz";
  }
  LogInitStep(absl::StrCat("choosing the accelerator (", options_.accelerator,
                           "; auto boots a probe guest under KVM)"),
              start);
  if (auto s = ChooseAccelerator(); !s.ok()) return s;
  ready_ = true;
  PV_LOG(kInfo) << "hypervisor: libvirt " << uri_ << ", accelerator "
                << domain_options_.accelerator << ", tsc " << domain_options_.tsc_khz
                << " kHz, ready in " << absl::FormatDuration(absl::Now() - start);
  return absl::OkStatus();
}

absl::Status LibvirtHypervisor::ChooseAccelerator() {
  // The probe outcome is a property of the host: decide once per process.
  static absl::Mutex probe_mu(absl::kConstInit);
  static std::optional<bool> kvm_boots ABSL_GUARDED_BY(probe_mu);
  const std::string& wanted = options_.accelerator;
  if (wanted == "kvm" || wanted == "tcg") {
    domain_options_.accelerator = wanted;
  } else if (wanted != "auto") {
    return absl::InvalidArgumentError(
        absl::StrCat("accelerator must be auto, kvm or tcg, got '", wanted, "'"));
  } else if (access("/dev/kvm", R_OK | W_OK) != 0) {
    domain_options_.accelerator = "tcg";
  } else {
    absl::MutexLock lock(&probe_mu);
    bool probed = false;
    if (!kvm_boots.has_value()) {
      auto booted = ProbeKvm(probed);
      if (!booted.ok()) return Annotate(booted.status(), "KVM probe");
      kvm_boots = *booted;
    }
    domain_options_.accelerator = *kvm_boots ? "kvm" : "tcg";
    if (probed) return absl::OkStatus();  // the probe create has warmed libvirt up
  }
  // Warm-up: the first create makes libvirt probe QEMU's capabilities (seconds).
  auto warm = ProbeBoot(domain_options_.accelerator, absl::ZeroDuration());
  return warm.ok() ? absl::OkStatus() : Annotate(warm.status(), "warm-up create");
}

absl::StatusOr<bool> LibvirtHypervisor::ProbeKvm(bool& probed) {
  std::string key;
  if (!options_.probe_cache_path.empty()) {
    unsigned long libvirt_version = 0;
    virGetVersion(&libvirt_version, nullptr, nullptr);
    auto k = AccelProbeKey({options_.emulator, options_.kernel, options_.initrd, libvirt_version});
    if (k.ok()) {
      key = std::move(*k);
      if (std::optional<bool> cached = LoadAccelProbe(options_.probe_cache_path, key)) {
        PV_LOG(kInfo) << "KVM probe: cached result (" << options_.probe_cache_path << "): "
                      << (*cached ? "guest booted" : "guest did not boot");
        return *cached;
      }
    } else {
      PV_LOG(kWarning) << "KVM probe: not cached: " << k.status().message();
    }
  }
  auto booted = ProbeBoot("kvm", options_.kvm_probe_timeout);
  if (!booted.ok()) return booted.status();
  probed = true;
  PV_LOG(kInfo) << "KVM probe: " << (*booted ? "guest booted" : "guest did not boot")
                << " within " << absl::FormatDuration(options_.kvm_probe_timeout);
  if (!key.empty()) {
    if (absl::Status s = StoreAccelProbe(options_.probe_cache_path, key, *booted); !s.ok()) {
      PV_LOG(kWarning) << "KVM probe: cannot cache the result: " << s.message();
    }
  }
  return *booted;
}

absl::StatusOr<bool> LibvirtHypervisor::ProbeBoot(const std::string& accelerator,
                                                   absl::Duration timeout) {
  if (options_.kernel.empty() || options_.initrd.empty()) {
    return absl::FailedPreconditionError("no guest kernel/initrd configured for the probe");
  }
  char dir_template[] = "/tmp/podvisor-probe.XXXXXX";
  if (mkdtemp(dir_template) == nullptr) return ErrnoStatus("create probe directory", errno);
  std::string dir = dir_template;
  absl::Cleanup remove_dir = [&] { RemoveAll(dir).IgnoreError(); };
  VmSpec spec;
  spec.id = absl::StrCat(kProbeIdPrefix, getpid());
  spec.memory_mib = 128;
  spec.kernel = options_.kernel;
  spec.initrd = options_.initrd;
  // No such init: the kernel panics right after unpacking the initrd, panic=-1 resets, and the
  // domain (on_reboot=destroy) stops.
  spec.extra_kernel_args = "rdinit=/podvisor-probe-no-init";
  spec.state_dir = dir;
  spec.agent_socket = dir + "/agent.sock";
  spec.console_log = dir + "/console.log";
  DomainOptions domain_options = domain_options_;
  domain_options.accelerator = accelerator;
  auto xml = BuildDomainXml(spec, domain_options);
  if (!xml.ok()) return xml.status();
  DomainRef dom(virDomainCreateXML(conn_, xml->c_str(), 0));
  if (dom == nullptr) return VirError(absl::StrCat("create ", accelerator, " probe VM"));
  ExpectStop(dom.get());
  WatchQemu(dom.get(), spec.id);  // reaps it when it exits
  absl::Time deadline = absl::Now() + timeout;
  bool stopped = false;
  while (absl::Now() < deadline) {
    if (virDomainIsActive(dom.get()) != 1) {
      stopped = true;
      break;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  if (!stopped) virDomainDestroy(dom.get());
  return stopped;
}

absl::StatusOr<DomainRef> LibvirtHypervisor::Lookup(const std::string& id) {
  if (conn_ == nullptr) return absl::FailedPreconditionError("hypervisor not initialised");
  DomainRef dom(virDomainLookupByName(conn_, DomainName(id).c_str()));
  if (dom == nullptr) return VirError(absl::StrCat("look up VM ", id));
  return dom;
}

absl::Status LibvirtHypervisor::Create(const VmSpec& spec) {
  if (conn_ == nullptr) return absl::FailedPreconditionError("hypervisor not initialised");
  auto xml = BuildDomainXml(spec, domain_options_);
  if (!xml.ok()) return Annotate(xml.status(), absl::StrCat("create VM ", spec.id));
  for (const std::string* path : {&spec.kernel, &spec.initrd}) {
    if (access(path->c_str(), R_OK) != 0) {
      return ErrnoStatus(absl::StrCat("create VM ", spec.id, ": guest image ", *path), errno);
    }
  }
  if (DomainRef existing(virDomainLookupByName(conn_, DomainName(spec.id).c_str())); existing) {
    return absl::AlreadyExistsError(absl::StrCat("create VM ", spec.id, ": already exists"));
  }
  unlink(spec.agent_socket.c_str());  // a stale socket from an earlier run would block QEMU
  absl::StatusOr<pid_t> console = -1;
  if (domain_options_.console_log_max_bytes > 0) {
    console = StartConsoleLog(spec.console_log, domain_options_.console_log_max_bytes);
    if (!console.ok()) return Annotate(console.status(), absl::StrCat("create VM ", spec.id));
  }
  absl::Time start = absl::Now();
  DomainRef created;
  const std::string netns = spec.nics.empty() ? "" : spec.nics.front().netns_path;
  absl::Status status = RunInNetns(netns, [&] {
    created.reset(virDomainCreateXML(conn_, xml->c_str(), 0));
    return created != nullptr ? absl::OkStatus() : VirError("libvirt");
  });
  if (status.ok() && !spec.cgroup_dirs.empty()) status = PlaceInCgroups(spec);
  if (!status.ok()) {
    // libvirt cleans up a failed start itself; make sure, and remove what QEMU may have made.
    if (DomainRef dom(virDomainLookupByName(conn_, DomainName(spec.id).c_str())); dom) {
      DestroyDomain(spec.id, dom.get()).IgnoreError();
    }
    unlink(spec.agent_socket.c_str());
    if (*console > 0) kill(*console, SIGTERM);  // no QEMU will ever write its console
    return Annotate(status, absl::StrCat("create VM ", spec.id));
  }
  if (!spec.restore_state.empty()) {
    if (absl::Status s = RestoreDomainState(created.get(), spec.restore_state,
                                            kTemplateStateTimeout);
        !s.ok()) {
      DestroyDomain(spec.id, created.get()).IgnoreError();
      return Annotate(s, absl::StrCat("create VM ", spec.id, " from its template"));
    }
  }
  WatchQemu(created.get(), spec.id);
  PV_LOG(kDebug) << "created VM " << spec.id << " in " << absl::FormatDuration(absl::Now() - start);
  return absl::OkStatus();
}

absl::Status LibvirtHypervisor::SaveTemplate(const std::string& id,
                                            const std::string& state_file) {
  auto dom = Lookup(id);
  if (!dom.ok()) return dom.status();
  absl::Status saved = SaveDomainState(dom->get(), state_file, kTemplateStateTimeout);
  absl::Status destroyed = DestroyDomain(id, dom->get());
  if (!saved.ok()) return Annotate(saved, absl::StrCat("save template VM ", id));
  return destroyed;
}

absl::Status LibvirtHypervisor::DestroyDomain(const std::string& id, virDomainPtr dom) {
  std::string socket = AgentSocketOf(dom);
  ExpectStop(dom);
  char uuid[VIR_UUID_STRING_BUFLEN];
  if (virDomainGetUUIDString(dom, uuid) == 0) TerminateProcesses(uuid);
  if (virDomainDestroy(dom) != 0) {
    // QEMU is gone already; libvirt may still be processing its exit.
    absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (virDomainIsActive(dom) == 1 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    if (virDomainIsActive(dom) == 1) return VirError(absl::StrCat("destroy VM ", id));
  }
  if (!socket.empty()) unlink(socket.c_str());
  return absl::OkStatus();
}

absl::Status LibvirtHypervisor::Destroy(const std::string& id) {
  auto dom = Lookup(id);
  if (absl::IsNotFound(dom.status())) return absl::OkStatus();
  if (!dom.ok()) return dom.status();
  return DestroyDomain(id, dom->get());
}

absl::Status LibvirtHypervisor::Stop(const std::string& id, absl::Duration timeout) {
  auto dom = Lookup(id);
  if (absl::IsNotFound(dom.status())) return absl::OkStatus();
  if (!dom.ok()) return dom.status();
  std::string socket = AgentSocketOf(dom->get());
  ExpectStop(dom->get());
  // ACPI power button; a guest that ignores it (our agent may) is destroyed after `timeout`.
  if (virDomainShutdown(dom->get()) != 0) {
    PV_LOG(kDebug) << "stop VM " << id << ": shutdown request: " << virGetLastErrorMessage();
  }
  absl::Time deadline = absl::Now() + timeout;
  while (virDomainIsActive(dom->get()) == 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  if (virDomainIsActive(dom->get()) == 1) {
    if (auto s = DestroyDomain(id, dom->get()); !s.ok()) return s;
  }
  if (!socket.empty()) unlink(socket.c_str());
  return absl::OkStatus();
}

pid_t LibvirtHypervisor::QemuPid(const std::string& id) {
  // libvirt keeps QEMU's pid in <run dir>/<name>.pid.
  std::string run_dir = embed_root_.empty() ? "/run/libvirt/qemu" : embed_root_ + "/run/qemu";
  auto text = ReadFile(absl::StrCat(run_dir, "/", DomainName(id), ".pid"));
  int pid = 0;
  if (!text.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &pid)) return 0;
  return pid;
}

absl::StatusOr<VmStatus> LibvirtHypervisor::Status(const std::string& id) {
  auto dom = Lookup(id);
  if (absl::IsNotFound(dom.status())) return VmStatus{};
  if (!dom.ok()) return dom.status();
  int state = 0, reason = 0;
  if (virDomainGetState(dom->get(), &state, &reason, 0) != 0) {
    if (LastErrorIsNoDomain()) return VmStatus{};
    return VirError(absl::StrCat("state of VM ", id));
  }
  VmStatus status;
  switch (state) {
    case VIR_DOMAIN_RUNNING:
    case VIR_DOMAIN_BLOCKED:
      status.state = VmState::kRunning;
      break;
    case VIR_DOMAIN_PAUSED:
    case VIR_DOMAIN_PMSUSPENDED:
      status.state = VmState::kPaused;
      break;
    default:
      status.state = VmState::kStopped;
  }
  if (status.state != VmState::kStopped) {
    // QEMU has exited but libvirt has not noticed yet (see WatchQemu): it is not running.
    char uuid[VIR_UUID_STRING_BUFLEN];
    if (virDomainGetUUIDString(dom->get(), uuid) == 0) {
      absl::MutexLock lock(&mu_);
      if (reported_.count(uuid) > 0) return VmStatus{VmState::kStopped, 0};
    }
    status.qemu_pid = QemuPid(id);
  }
  return status;
}

absl::StatusOr<std::vector<VmInfo>> LibvirtHypervisor::List() {
  if (conn_ == nullptr) return absl::FailedPreconditionError("hypervisor not initialised");
  virDomainPtr* domains = nullptr;
  int n = virConnectListAllDomains(conn_, &domains, 0);
  if (n < 0) return VirError("list VMs");
  std::vector<VmInfo> result;
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) {
    const char* name = virDomainGetName(domains[i]);
    if (name != nullptr && absl::StartsWith(name, kVmNamePrefix)) {
      std::string id = std::string(name).substr(strlen(kVmNamePrefix));
      if (absl::StartsWith(id, kProbeIdPrefix) || absl::StartsWith(id, kTemplateVmIdPrefix)) {
        // A probe or template build left behind by a daemon that died during it.
        if (virDomainIsActive(domains[i]) == 1) {
          ExpectStop(domains[i]);
          virDomainDestroy(domains[i]);
        }
      } else {
        ids.push_back(id);
      }
    }
    virDomainFree(domains[i]);
  }
  free(domains);
  for (const std::string& id : ids) {
    auto status = Status(id);
    if (!status.ok()) return status.status();
    if (status->state != VmState::kAbsent) result.push_back({id, *status});
  }
  return result;
}

absl::Status LibvirtHypervisor::Pause(const std::string& id) {
  auto dom = Lookup(id);
  if (!dom.ok()) return dom.status();
  if (virDomainSuspend(dom->get()) != 0) return VirError(absl::StrCat("pause VM ", id));
  return absl::OkStatus();
}

absl::Status LibvirtHypervisor::Resume(const std::string& id) {
  auto dom = Lookup(id);
  if (!dom.ok()) return dom.status();
  if (virDomainResume(dom->get()) != 0) return VirError(absl::StrCat("resume VM ", id));
  return absl::OkStatus();
}

absl::Status LibvirtHypervisor::AttachDisk(const std::string& id, const VmDisk& disk) {
  auto xml = BuildDiskXml(disk);
  if (!xml.ok()) return Annotate(xml.status(), absl::StrCat("attach disk to VM ", id));
  auto dom = Lookup(id);
  if (!dom.ok()) return dom.status();
  if (virDomainAttachDeviceFlags(dom->get(), xml->c_str(), VIR_DOMAIN_AFFECT_LIVE) != 0) {
    return VirError(absl::StrCat("attach disk ", disk.id, " to VM ", id));
  }
  return absl::OkStatus();
}

absl::Status LibvirtHypervisor::DetachDisk(const std::string& id, const std::string& disk_id) {
  auto dom = Lookup(id);
  if (!dom.ok()) return dom.status();
  std::string alias = absl::StrCat("ua-", disk_id);
  auto has_disk = [&] {
    char* xml = virDomainGetXMLDesc(dom->get(), 0);
    if (xml == nullptr) return false;
    bool found = absl::StrContains(xml, absl::StrCat("<alias name='", alias, "'/>"));
    free(xml);
    return found;
  };
  if (!has_disk()) {
    return absl::NotFoundError(absl::StrCat("detach disk ", disk_id, " from VM ", id,
                                            ": no such disk"));
  }
  if (virDomainDetachDeviceAlias(dom->get(), alias.c_str(), VIR_DOMAIN_AFFECT_LIVE) != 0) {
    return VirError(absl::StrCat("detach disk ", disk_id, " from VM ", id));
  }
  // libvirt may answer before QEMU has removed the device; return once it is gone.
  absl::Time deadline = absl::Now() + kDetachTimeout;
  while (has_disk()) {
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "detach disk ", disk_id, " from VM ", id, ": still present after ",
          absl::FormatDuration(kDetachTimeout)));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return absl::OkStatus();
}

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

}  // namespace

absl::StatusOr<std::unique_ptr<Hypervisor>> NewLibvirtHypervisor(
    LibvirtHypervisorOptions options) {
  return std::make_unique<LibvirtHypervisor>(std::move(options));
}

}  // namespace podvisor
