// PodSandboxStats, ListPodSandboxStats and StreamPodSandboxStats: the VM's cost on the host, the
// pod's network from its netns, the guest's process count and the containers' stats
// (docs/containers.md).

#include "cri/rpc.h"
#include "cri/runtime_service.h"
#include "cri/sandbox_convert.h"

namespace podvisor::cri {
namespace {

void ListAllSandboxStats(const Services& services,
                         const runtime::v1::PodSandboxStatsFilter& proto_filter,
                         google::protobuf::RepeatedPtrField<runtime::v1::PodSandboxStats>* out) {
  const SandboxFilter filter = FromProto(proto_filter);
  for (const SandboxStatsInfo& s : services.containers->ListSandboxStats(filter)) {
    ToProto(s, out->Add());
  }
  if (services.host) {
    for (const Sandbox& sandbox : services.host->ListSandboxes(filter)) {
      if (sandbox.status.state != SandboxState::kReady) continue;
      absl::StatusOr<SandboxStatsInfo> s = services.host->SandboxStats(sandbox.metadata.id);
      if (s.ok()) ToProto(*s, out->Add());
    }
  }
}

}  // namespace

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
    ListAllSandboxStats(*services_, request->filter(), response->mutable_stats());
    return absl::OkStatus();
  });
}

grpc::Status RuntimeService::StreamPodSandboxStats(
    grpc::ServerContext*, const runtime::v1::StreamPodSandboxStatsRequest* request,
    grpc::ServerWriter<runtime::v1::StreamPodSandboxStatsResponse>* writer) {
  return Serve("StreamPodSandboxStats", [&] {
    google::protobuf::RepeatedPtrField<runtime::v1::PodSandboxStats> items;
    ListAllSandboxStats(*services_, request->filter(), &items);
    return WritePaged("StreamPodSandboxStats", writer, &items,
                      [](runtime::v1::StreamPodSandboxStatsResponse& m) {
                        return m.mutable_pod_sandbox_stats();
                      });
  });
}

}  // namespace podvisor::cri
