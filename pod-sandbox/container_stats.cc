// ContainerStats and ListContainerStats: the guest's cgroup figures of running containers, asked
// of every pod's agent in parallel with a short deadline.
#include "absl/strings/str_cat.h"
#include "common/fan_out.h"
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
  // One agent call per pod, in parallel and each bounded: a stalled guest leaves its own
  // containers without figures and holds nobody else up. Each pod writes only its own entries.
  const std::vector<std::pair<std::string, std::vector<size_t>>> pods(running_by_sandbox.begin(),
                                                                      running_by_sandbox.end());
  ForEachInParallel(pods.size(), options_.stats_max_parallel, [&](size_t p) {
    const auto& [sandbox_id, indexes] = pods[p];
    absl::StatusOr<std::shared_ptr<AgentClient>> agent = sandbox_view_->Agent(sandbox_id);
    if (!agent.ok()) return;
    std::vector<std::string> ids;
    for (size_t i : indexes) ids.push_back(out[i].container.metadata.id);
    absl::StatusOr<std::vector<GuestContainerStats>> stats =
        (*agent)->Stats(ids, options_.stats_agent_timeout);
    if (!stats.ok()) {
      PV_LOG(kWarning) << "sandbox " << ShortId(sandbox_id)
                       << ": its containers are reported without figures: " << stats.status();
      return;
    }
    const int64_t now = absl::ToUnixNanos(absl::Now());
    for (const GuestContainerStats& s : *stats) {
      for (size_t i : indexes) {
        if (out[i].container.metadata.id == s.container_id) {
          out[i].stats = s;
          out[i].stats.timestamp_ns = now;
          out[i].measured = true;
        }
      }
    }
  });
  return out;
}

}  // namespace podvisor
