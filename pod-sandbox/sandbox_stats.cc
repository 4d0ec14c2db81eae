// PodSandboxStats and ListPodSandboxStats: what a pod VM costs the host, the guest's own totals
// and the figures of the pod's containers.
#include "absl/strings/str_cat.h"
#include "common/fan_out.h"
#include "common/log.h"
#include "pod-sandbox/container_controller.h"

namespace podvisor {

absl::StatusOr<SandboxStatsInfo> ContainerController::SandboxStatsOf(const Sandbox& sandbox) {
  const std::string& id = sandbox.metadata.id;
  absl::StatusOr<VmHostStats> host = sandbox_view_->HostStats(id);
  if (!host.ok()) {
    return absl::UnavailableError(
        absl::StrCat("stats of sandbox ", ShortId(id), ": ", host.status().message()));
  }
  SandboxStatsInfo info;
  info.sandbox = sandbox;
  info.host = std::move(*host);
  absl::StatusOr<std::shared_ptr<AgentClient>> agent = sandbox_view_->Agent(id);
  if (agent.ok()) {
    absl::StatusOr<GuestSandboxStats> guest = (*agent)->SandboxStats(options_.stats_agent_timeout);
    if (guest.ok()) {
      guest->timestamp_ns = absl::ToUnixNanos(absl::Now());
      info.guest = std::move(*guest);
    } else {
      // The host's figures of the VM still stand; the guest's and the containers' are left out.
      PV_LOG(kWarning) << "sandbox " << ShortId(id)
                       << ": reported without guest figures: " << guest.status();
    }
  }
  ContainerFilter filter;
  filter.sandbox_id_prefix = id;
  for (Container& c : List(filter)) {
    if (c.metadata.sandbox_id != id) continue;
    ContainerStatsInfo s;
    s.container = std::move(c);
    s.stats.container_id = s.container.metadata.id;
    s.stats.timestamp_ns = info.host.timestamp_ns;
    if (info.guest && s.container.status.state == ContainerState::kRunning) {
      for (const GuestContainerStats& g : info.guest->containers) {
        if (g.container_id != s.stats.container_id) continue;
        s.stats = g;
        s.stats.timestamp_ns = info.guest->timestamp_ns;
        s.measured = true;
      }
    }
    info.containers.push_back(std::move(s));
  }
  if (info.host.vm) {
    absl::MutexLock lock(&mu_);
    auto& last = last_vm_cpu_[id];
    const int64_t dt = info.host.timestamp_ns - last.first;
    if (last.first > 0 && dt > 0 && info.host.vm->cpu_ns >= last.second) {
      info.vm_nano_cores = static_cast<uint64_t>(
          static_cast<double>(info.host.vm->cpu_ns - last.second) * 1e9 / static_cast<double>(dt));
    }
    last = {info.host.timestamp_ns, info.host.vm->cpu_ns};
  }
  return info;
}

absl::StatusOr<SandboxStatsInfo> ContainerController::SandboxStats(
    const std::string& sandbox_id_or_prefix) {
  absl::StatusOr<std::string> id = sandboxes_->Resolve(sandbox_id_or_prefix);
  if (!id.ok()) return id.status();
  absl::StatusOr<Sandbox> sandbox = sandboxes_->Get(*id);
  if (!sandbox.ok()) return sandbox.status();
  if (sandbox->status.state != SandboxState::kReady) {
    return absl::UnavailableError(
        absl::StrCat("stats of sandbox ", ShortId(*id), ": it is not ready (its VM is stopped)"));
  }
  return SandboxStatsOf(*sandbox);
}

std::vector<SandboxStatsInfo> ContainerController::ListSandboxStats(const SandboxFilter& filter) {
  SandboxFilter ready = filter;
  ready.state = SandboxState::kReady;
  const std::vector<Sandbox> sandboxes = sandbox_view_->List(ready);
  // Every pod at once (bounded): one stalled guest costs stats_agent_timeout, not everyone's.
  std::vector<absl::StatusOr<SandboxStatsInfo>> infos(sandboxes.size(),
                                                      absl::UnknownError("not asked"));
  ForEachInParallel(sandboxes.size(), options_.stats_max_parallel,
                    [&](size_t i) { infos[i] = SandboxStatsOf(sandboxes[i]); });
  std::vector<SandboxStatsInfo> out;
  for (absl::StatusOr<SandboxStatsInfo>& info : infos) {
    if (info.ok()) {
      out.push_back(std::move(*info));
    } else {
      // Stopped meanwhile (its VM cannot be read): left out, as a sandbox that is not ready is
      // and as containerd leaves out a sandbox whose stats are unavailable.
      PV_LOG(kDebug) << info.status();
    }
  }
  return out;
}

}  // namespace podvisor
