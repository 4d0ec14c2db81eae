// RuntimeService RPCs that podvisor does not serve yet: each answers UNIMPLEMENTED with a
// sentence naming it. A handler moves to its own file when it is built.

#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {

grpc::Status RuntimeService::CheckpointContainer(grpc::ServerContext*, const runtime::v1::CheckpointContainerRequest*,
                                 runtime::v1::CheckpointContainerResponse*) {
  return Serve("CheckpointContainer", [] { return NotImplemented("CheckpointContainer", "checkpointing a container inside a VM is not supported"); });
}

grpc::Status RuntimeService::ListMetricDescriptors(grpc::ServerContext*, const runtime::v1::ListMetricDescriptorsRequest*,
                                 runtime::v1::ListMetricDescriptorsResponse*) {
  return Serve("ListMetricDescriptors", [] { return NotImplemented("ListMetricDescriptors", "CRI-provided metrics are not offered; use the stats RPCs"); });
}

grpc::Status RuntimeService::ListPodSandboxMetrics(grpc::ServerContext*, const runtime::v1::ListPodSandboxMetricsRequest*,
                                 runtime::v1::ListPodSandboxMetricsResponse*) {
  return Serve("ListPodSandboxMetrics", [] { return NotImplemented("ListPodSandboxMetrics", "CRI-provided metrics are not offered; use the stats RPCs"); });
}

grpc::Status RuntimeService::UpdatePodSandboxResources(grpc::ServerContext*, const runtime::v1::UpdatePodSandboxResourcesRequest*,
                                 runtime::v1::UpdatePodSandboxResourcesResponse*) {
  return Serve("UpdatePodSandboxResources", [] { return NotImplemented("UpdatePodSandboxResources", "resizing a running pod VM is not supported"); });
}

grpc::Status RuntimeService::StreamPodSandboxMetrics(grpc::ServerContext*, const runtime::v1::StreamPodSandboxMetricsRequest*,
                                 grpc::ServerWriter<runtime::v1::StreamPodSandboxMetricsResponse>*) {
  return Serve("StreamPodSandboxMetrics", [] { return NotImplemented("StreamPodSandboxMetrics", "CRI-provided metrics are not offered"); });
}

}  // namespace podvisor::cri
