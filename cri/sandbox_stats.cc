// PodSandboxStats and ListPodSandboxStats: the VM's cost on the host, the pod's network from its
// netns, the guest's process count and the containers' stats (docs/containers.md).

#include "cri/rpc.h"
#include "cri/runtime_service.h"
#include "cri/sandbox_convert.h"

namespace podvisor::cri {

grpc::Status RuntimeService::PodSandboxStats(grpc::ServerContext*,
                                             const runtime::v1::PodSandboxStatsRequest* request,
                                             runtime::v1::PodSandboxStatsResponse* response) {
  return Serve("PodSandboxStats", [&]() -> absl::Status {
    if (request->pod_sandbox_id().empty()) {
      return absl::InvalidArgumentError("pod_sandbox_id is required");
    }
    absl::StatusOr<SandboxStatsInfo> s =
        services_->HostSandbox(request->pod_sandbox_id())
            ? services_->host->SandboxStats(request->pod_sandbox_id())
            : services_->containers->SandboxStats(request->pod_sandbox_id());
    if (!s.ok()) return s.status();
    ToProto(*s, response->mutable_stats());
    return absl::OkStatus();
  });
}

grpc::Status RuntimeService::ListPodSandboxStats(
    grpc::ServerContext*, const runtime::v1::ListPodSandboxStatsRequest* request,
    runtime::v1::ListPodSandboxStatsResponse* response) {
  return Serve("ListPodSandboxStats", [&] {
    const SandboxFilter filter = FromProto(request->filter());
    for (const SandboxStatsInfo& s : services_->containers->ListSandboxStats(filter)) {
      ToProto(s, response->add_stats());
    }
    if (services_->host) {
      for (const Sandbox& sandbox : services_->host->ListSandboxes(filter)) {
        if (sandbox.status.state != SandboxState::kReady) continue;
        absl::StatusOr<SandboxStatsInfo> s = services_->host->SandboxStats(sandbox.metadata.id);
        if (s.ok()) ToProto(*s, response->add_stats());
      }
    }
    return absl::OkStatus();
  });
}

}  // namespace podvisor::cri
