// ContainerStats and ListContainerStats: the guest's cgroup figures of running containers.
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "pod-sandbox/container_controller.h"

namespace podvisor {

absl::StatusOr<ContainerStatsInfo> ContainerController::Stats(const std::string& id_or_prefix) {
  absl::StatusOr<std::string> id = ResolveId(id_or_prefix);
  if (!id.ok()) return id.status();
  ContainerFilter filter;
  filter.id_prefix = *id;
  std::vector<ContainerStatsInfo> all = ListStats(filter);
  for (ContainerStatsInfo& s : all) {
    if (s.container.metadata.id == *id) return std::move(s);
  }
  return absl::NotFoundError(absl::StrCat("container ", *id, " not found"));
}

std::vector<ContainerStatsInfo> ContainerController::ListStats(const ContainerFilter& filter) {
  std::vector<ContainerStatsInfo> out;
  std::map<std::string, std::vector<size_t>> running_by_sandbox;
  for (Container& c : List(filter)) {
    if (c.status.state == ContainerState::kRunning) {
      running_by_sandbox[c.metadata.sandbox_id].push_back(out.size());
    }
    ContainerStatsInfo info;
    info.container = std::move(c);
    info.stats.container_id = info.container.metadata.id;
    info.stats.timestamp_ns = absl::ToUnixNanos(absl::Now());
    out.push_back(std::move(info));
  }
  for (const auto& [sandbox_id, indexes] : running_by_sandbox) {
    absl::StatusOr<std::shared_ptr<AgentClient>> agent = sandbox_view_->Agent(sandbox_id);
    if (!agent.ok()) continue;
    std::vector<std::string> ids;
    for (size_t i : indexes) ids.push_back(out[i].container.metadata.id);
    absl::StatusOr<std::vector<GuestContainerStats>> stats =
        (*agent)->Stats(ids, options_.agent_call_timeout);
    if (!stats.ok()) {
      PV_LOG(kDebug) << "sandbox " << ShortId(sandbox_id) << ": stats: " << stats.status();
      continue;
    }
    for (const GuestContainerStats& s : *stats) {
      for (size_t i : indexes) {
        if (out[i].container.metadata.id == s.container_id) {
          out[i].stats = s;
          out[i].stats.timestamp_ns = absl::ToUnixNanos(absl::Now());
        }
      }
    }
  }
  return out;
}

}  // namespace podvisor
