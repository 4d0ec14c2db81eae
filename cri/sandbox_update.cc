// UpdatePodSandboxResources: the pod-level resources kubelet resized (docs/runtime-handlers.md
// says what each handler honours).

#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {
namespace {

// The pod's resources plus its overhead, as RunPodSandbox adds them.
SandboxResources PodResources(const runtime::v1::UpdatePodSandboxResourcesRequest& request) {
  const runtime::v1::LinuxContainerResources& r = request.resources();
  const runtime::v1::LinuxContainerResources& o = request.overhead();
  SandboxResources out;
  out.cpu_period = r.cpu_period() > 0 ? r.cpu_period() : o.cpu_period();
  out.cpu_quota = r.cpu_quota();
  if (r.cpu_quota() > 0 && o.cpu_quota() > 0) out.cpu_quota += o.cpu_quota();
  out.containers_cpu_quota = r.cpu_quota();
  out.containers_memory_limit_bytes = r.memory_limit_in_bytes();
  out.memory_limit_bytes = r.memory_limit_in_bytes();
  if (r.memory_limit_in_bytes() > 0 && o.memory_limit_in_bytes() > 0) {
    out.memory_limit_bytes += o.memory_limit_in_bytes();
  }
  return out;
}

}  // namespace

grpc::Status RuntimeService::UpdatePodSandboxResources(
    grpc::ServerContext*, const runtime::v1::UpdatePodSandboxResourcesRequest* request,
    runtime::v1::UpdatePodSandboxResourcesResponse*) {
  return Serve("UpdatePodSandboxResources", [&]() -> absl::Status {
    if (request->pod_sandbox_id().empty()) {
      return absl::InvalidArgumentError("pod_sandbox_id is required");
    }
    const SandboxResources update = PodResources(*request);
    if (services_->HostSandbox(request->pod_sandbox_id())) {
      return services_->host->UpdateSandboxResources(request->pod_sandbox_id(), update);
    }
    return services_->sandboxes->UpdateResources(request->pod_sandbox_id(), update);
  });
}

}  // namespace podvisor::cri
