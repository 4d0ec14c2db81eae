// ListMetricDescriptors, ListPodSandboxMetrics and StreamPodSandboxMetrics: the stats of every
// ready pod of both handlers, under cAdvisor's metric names (cri/metrics_convert.h).

#include "cri/metrics_convert.h"
#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {
namespace {

void ListAllMetrics(const Services& services,
                    google::protobuf::RepeatedPtrField<runtime::v1::PodSandboxMetrics>* out) {
  for (const SandboxStatsInfo& s : services.containers->ListSandboxStats({})) {
    ToMetrics(s, out->Add());
  }
  if (services.host) {
    for (const Sandbox& sandbox : services.host->ListSandboxes({})) {
      if (sandbox.status.state != SandboxState::kReady) continue;
      absl::StatusOr<SandboxStatsInfo> s = services.host->SandboxStats(sandbox.metadata.id);
      if (s.ok()) ToMetrics(*s, out->Add());
    }
  }
}

}  // namespace

grpc::Status RuntimeService::ListMetricDescriptors(
    grpc::ServerContext*, const runtime::v1::ListMetricDescriptorsRequest*,
    runtime::v1::ListMetricDescriptorsResponse* response) {
  return Serve("ListMetricDescriptors", [&] {
    AllMetricDescriptors(response);
    return absl::OkStatus();
  });
}

grpc::Status RuntimeService::ListPodSandboxMetrics(
    grpc::ServerContext*, const runtime::v1::ListPodSandboxMetricsRequest*,
    runtime::v1::ListPodSandboxMetricsResponse* response) {
  return Serve("ListPodSandboxMetrics", [&] {
    ListAllMetrics(*services_, response->mutable_pod_metrics());
    return absl::OkStatus();
  });
}

grpc::Status RuntimeService::StreamPodSandboxMetrics(
    grpc::ServerContext*, const runtime::v1::StreamPodSandboxMetricsRequest*,
    grpc::ServerWriter<runtime::v1::StreamPodSandboxMetricsResponse>* writer) {
  return Serve("StreamPodSandboxMetrics", [&] {
    google::protobuf::RepeatedPtrField<runtime::v1::PodSandboxMetrics> items;
    ListAllMetrics(*services_, &items);
    return WritePaged("StreamPodSandboxMetrics", writer, &items,
                      [](runtime::v1::StreamPodSandboxMetricsResponse& m) {
                        return m.mutable_pod_sandbox_metrics();
                      });
  });
}

}  // namespace podvisor::cri
