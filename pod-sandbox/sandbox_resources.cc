// SandboxController::UpdateResources (UpdatePodSandboxResources): what a running pod VM can
// change without a resize, which the machine type here does not offer (no memory hotplug).

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_util.h"
#include "pod-sandbox/sandbox_controller.h"
#include "pod-sandbox/vm_cgroup.h"

namespace podvisor {
namespace {

constexpr uint64_t kMiB = 1024 * 1024;
// As in sandbox_controller.cc: what the guest itself needs beyond the pod's limit.
constexpr uint64_t kGuestOverheadMib = 128;

}  // namespace

absl::Status SandboxController::UpdateResources(const std::string& id_or_prefix,
                                                const SandboxResources& update) {
  absl::StatusOr<std::string> id = sandboxes_->Resolve(id_or_prefix);
  if (!id.ok()) return id.status();
  if (absl::Status s = AwaitReady(); !s.ok()) return s;
  if (update.cpu_quota < -1 || update.cpu_period < 0 || update.memory_limit_bytes < 0 ||
      update.containers_cpu_quota < -1 || update.containers_memory_limit_bytes < 0) {
    return absl::InvalidArgumentError("pod resources: negative cpu_period, cpu_quota or memory");
  }
  auto lock = LockFor(*id);
  std::lock_guard<std::mutex> guard(*lock);
  absl::StatusOr<Sandbox> sandbox = sandboxes_->Get(*id);
  if (!sandbox.ok()) return sandbox.status();
  const SandboxMetadata& meta = sandbox->metadata;
  if (sandbox->status.state != SandboxState::kReady) {
    return absl::FailedPreconditionError(
        absl::StrCat("pod sandbox ", ShortId(*id), " is not ready"));
  }
  const uint64_t room_mib =
      meta.memory_mib > kGuestOverheadMib ? meta.memory_mib - kGuestOverheadMib : 0;
  if (update.memory_limit_bytes > 0 &&
      static_cast<uint64_t>(update.memory_limit_bytes) > room_mib * kMiB) {
    return absl::FailedPreconditionError(absl::StrCat(
        "pod sandbox ", ShortId(*id), ": a memory limit of ",
        (update.memory_limit_bytes + kMiB - 1) / kMiB, " MiB does not fit the pod's VM (",
        meta.memory_mib, " MiB, of which ", room_mib,
        " MiB for containers); a running VM cannot grow: recreate the pod to resize it"));
  }
  const std::string context = absl::StrCat("update pod sandbox ", ShortId(*id));
  // In the guest: the cgroup above every container's, so that together they hold no more than
  // the pod's limits (the VM's RAM and vCPUs bound the guest itself).
  absl::StatusOr<std::shared_ptr<AgentClient>> agent = Agent(*id);
  if (!agent.ok()) return WithContext(agent.status(), context);
  PodLimits guest;
  guest.memory_limit_bytes = update.containers_memory_limit_bytes;
  guest.cpu_quota = update.containers_cpu_quota;
  guest.cpu_period = update.cpu_period;
  if (absl::Status s = (*agent)->UpdatePodResources(guest, absl::Seconds(30)); !s.ok()) {
    return WithContext(s, context);
  }
  PV_LOG(kInfo) << "sandbox " << ShortId(*id) << ": guest pod cgroup memory "
                << (guest.memory_limit_bytes > 0 ? absl::StrCat(guest.memory_limit_bytes)
                                                 : std::string("unlimited"));
  // On the host: the VM's CPU time, under the pod's cgroup_parent.
  if (update.cpu_quota == 0 || meta.cgroup_parent.empty()) return absl::OkStatus();
  VmCgroupLimits limits;
  limits.cpu_quota_us = update.cpu_quota;
  limits.cpu_period_us = update.cpu_period > 0 ? update.cpu_period : 100000;
  if (absl::Status s = VmCgroup(options_.cgroup_root, meta.cgroup_parent, meta.id).Update(limits);
      !s.ok()) {
    return WithContext(s, context);
  }
  PV_LOG(kInfo) << "sandbox " << ShortId(*id) << ": CPU quota " << limits.cpu_quota_us << "/"
                << limits.cpu_period_us << " us";
  return absl::OkStatus();
}

}  // namespace podvisor
