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

constexpr absl::Duration kDetachTimeout = absl::Seconds(20);
// Saving a template writes ~60 KB; restoring a clone reads it. Generous for a loaded host.
constexpr absl::Duration kTemplateStateTimeout = absl::Seconds(30);

bool LastErrorIsNoDomain() {
  virErrorPtr err = virGetLastError();
  return err != nullptr && err->code == VIR_ERR_NO_DOMAIN;
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

}  // namespace

absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

absl::Status VirError(absl::string_view what, absl::StatusCode code) {
  virErrorPtr err = virGetLastError();
  std::string message =
      err != nullptr && err->message != nullptr ? err->message : "unknown libvirt error";
  if (err != nullptr && err->code == VIR_ERR_NO_DOMAIN) code = absl::StatusCode::kNotFound;
  if (err != nullptr && err->code == VIR_ERR_OPERATION_INVALID &&
      code == absl::StatusCode::kUnavailable) {
    code = absl::StatusCode::kFailedPrecondition;
  }
  return absl::Status(code, absl::StrCat(what, ": ", message));
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
    if (absl::Status s =
            RestoreDomainState(created.get(), spec.restore_state, kTemplateStateTimeout);
        !s.ok()) {
      DestroyDomain(spec.id, created.get()).IgnoreError();
      return Annotate(s, absl::StrCat("create VM ", spec.id, " from its template"));
    }
  }
  WatchQemu(created.get(), spec.id);
  PV_LOG(kDebug) << "created VM " << spec.id << " in " << absl::FormatDuration(absl::Now() - start);
  return absl::OkStatus();
}

absl::Status LibvirtHypervisor::SaveTemplate(const std::string& id, const std::string& state_file) {
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
    return absl::NotFoundError(
        absl::StrCat("detach disk ", disk_id, " from VM ", id, ": no such disk"));
  }
  if (virDomainDetachDeviceAlias(dom->get(), alias.c_str(), VIR_DOMAIN_AFFECT_LIVE) != 0) {
    return VirError(absl::StrCat("detach disk ", disk_id, " from VM ", id));
  }
  // libvirt may answer before QEMU has removed the device; return once it is gone.
  absl::Time deadline = absl::Now() + kDetachTimeout;
  while (has_disk()) {
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("detach disk ", disk_id, " from VM ", id,
                                                      ": still present after ",
                                                      absl::FormatDuration(kDetachTimeout)));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<VmDisk>> LibvirtHypervisor::ListDisks(const std::string& id) {
  auto dom = Lookup(id);
  if (!dom.ok()) return dom.status();
  char* xml = virDomainGetXMLDesc(dom->get(), 0);
  if (xml == nullptr) return VirError(absl::StrCat("list disks of VM ", id));
  std::vector<VmDisk> disks = ParseDomainDisks(xml);
  free(xml);
  return disks;
}

}  // namespace podvisor::libvirt_backend

namespace podvisor {

absl::StatusOr<std::unique_ptr<Hypervisor>> NewLibvirtHypervisor(LibvirtHypervisorOptions options) {
  return std::make_unique<libvirt_backend::LibvirtHypervisor>(std::move(options));
}

}  // namespace podvisor
