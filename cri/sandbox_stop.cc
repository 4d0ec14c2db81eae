// StopPodSandbox and RemovePodSandbox. Unknown ids succeed: kubelet retries both freely.

#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {

grpc::Status RuntimeService::StopPodSandbox(grpc::ServerContext*,
                                            const runtime::v1::StopPodSandboxRequest* request,
                                            runtime::v1::StopPodSandboxResponse*) {
  return Serve("StopPodSandbox", [&]() -> absl::Status {
    if (request->pod_sandbox_id().empty()) {
      return absl::InvalidArgumentError("pod_sandbox_id is required");
    }
    if (services_->HostSandbox(request->pod_sandbox_id())) {
      return services_->host->StopSandbox(request->pod_sandbox_id());
    }
    return services_->sandboxes->Stop(request->pod_sandbox_id());
  });
}

grpc::Status RuntimeService::RemovePodSandbox(grpc::ServerContext*,
                                              const runtime::v1::RemovePodSandboxRequest* request,
                                              runtime::v1::RemovePodSandboxResponse*) {
  return Serve("RemovePodSandbox", [&]() -> absl::Status {
    if (request->pod_sandbox_id().empty()) {
      return absl::InvalidArgumentError("pod_sandbox_id is required");
    }
    if (services_->HostSandbox(request->pod_sandbox_id())) {
      return services_->host->RemoveSandbox(request->pod_sandbox_id());
    }
    return services_->sandboxes->Remove(request->pod_sandbox_id());
  });
}

}  // namespace podvisor::cri
