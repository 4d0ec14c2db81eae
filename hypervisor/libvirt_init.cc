// The libvirt backend, part 2: connecting to libvirt (embedded driver by default), preparing its
// root, and choosing the accelerator (KVM only where a guest really boots under it).
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
#include "hypervisor/capability_probes.h"
#include "hypervisor/console_log.h"
#include "hypervisor/domain_xml.h"
#include "hypervisor/host_support.h"
#include "hypervisor/hypervisor.h"
#include "hypervisor/libvirt_hypervisor_impl.h"
#include "hypervisor/libvirt_template.h"
#include "hypervisor/process_reaper.h"

namespace podvisor::libvirt_backend {
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

// The first initialisation takes seconds: say what it is doing, and since when.
void LogInitStep(absl::string_view step, absl::Time start) {
  PV_LOG(kInfo) << "hypervisor init (+" << absl::ToInt64Milliseconds(absl::Now() - start)
                << " ms): " << step;
}

}  // namespace

absl::Status LibvirtHypervisor::PrepareEmbedRoot() {
  if (auto s = MakeDirs(embed_root_ + "/etc", 0700); !s.ok()) return s;
  std::string conf_path = embed_root_ + "/etc/qemu.conf";
  const std::string conf = absl::StrCat(kQemuConf, QemuSandboxConf(options_.qemu_sandbox));
  auto current = ReadFile(conf_path);
  if (current.ok() && *current == conf) return absl::OkStatus();
  return WriteFileAtomic(conf_path, conf, 0600);
}

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
  if (!embed_root_.empty()) {
    // Probes a daemon left running when it ended during its start-up (no probe of ours yet).
    KillCapabilityProbes(embed_root_, true);
  }
  EnsureEventLoop();
  LogInitStep(absl::StrCat("connecting to ", uri_,
                           " (a first connection probes QEMU's capabilities: seconds)"),
              start);
  conn_ = virConnectOpen(uri_.c_str());
  if (conn_ == nullptr) return VirError(absl::StrCat("connect to ", uri_));
  LogInitStep("connected; finding VMs that outlived a daemon restart", start);
  callback_id_ =
      virConnectDomainEventRegisterAny(conn_, nullptr, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                       VIR_DOMAIN_EVENT_CALLBACK(&OnLifecycle), this, nullptr);
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
  PV_LOG(kInfo) << "hypervisor: libvirt " << uri_ << ", accelerator " << domain_options_.accelerator
                << ", tsc " << domain_options_.tsc_khz << " kHz, ready in "
                << absl::FormatDuration(absl::Now() - start);
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
        PV_LOG(kInfo) << "KVM probe: cached result (" << options_.probe_cache_path
                      << "): " << (*cached ? "guest booted" : "guest did not boot");
        return *cached;
      }
    } else {
      PV_LOG(kWarning) << "KVM probe: not cached: " << k.status().message();
    }
  }
  auto booted = ProbeBoot("kvm", options_.kvm_probe_timeout);
  if (!booted.ok()) return booted.status();
  probed = true;
  PV_LOG(kInfo) << "KVM probe: " << (*booted ? "guest booted" : "guest did not boot") << " within "
                << absl::FormatDuration(options_.kvm_probe_timeout);
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
  if (init_cancelled_.load())
    return absl::CancelledError("the daemon is stopping: start-up cancelled");
  DomainRef dom(virDomainCreateXML(conn_, xml->c_str(), 0));
  if (dom == nullptr) return VirError(absl::StrCat("create ", accelerator, " probe VM"));
  ExpectStop(dom.get());
  WatchQemu(dom.get(), spec.id);  // reaps it when it exits
  if (timeout > absl::ZeroDuration()) {
    PV_LOG(kInfo) << "KVM probe: probe guest started under " << accelerator << ", waiting up to "
                  << absl::FormatDuration(timeout) << " for it to boot";
  }
  absl::Time deadline = absl::Now() + timeout;
  bool stopped = false;
  while (absl::Now() < deadline && !init_cancelled_.load()) {
    if (virDomainIsActive(dom.get()) != 1) {
      stopped = true;
      break;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  if (!stopped) virDomainDestroy(dom.get());
  if (!stopped && init_cancelled_.load()) {
    return absl::CancelledError("the daemon is stopping: start-up cancelled");
  }
  return stopped;
}

}  // namespace podvisor::libvirt_backend
