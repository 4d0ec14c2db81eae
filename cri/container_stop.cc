// StopContainer and RemoveContainer. Unknown ids succeed: kubelet retries both freely.

#include "cri/container_convert.h"
#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {

grpc::Status RuntimeService::StopContainer(grpc::ServerContext*,
                                           const runtime::v1::StopContainerRequest* request,
                                           runtime::v1::StopContainerResponse*) {
  return Serve("StopContainer", [&]() -> absl::Status {
    if (request->container_id().empty()) {
      return absl::InvalidArgumentError("container_id is required");
    }
    if (request->timeout() < 0) return absl::InvalidArgumentError("timeout must not be negative");
    if (services_->HostContainer(request->container_id())) {
      return services_->host->StopContainer(request->container_id(),
                                            absl::Seconds(request->timeout()));
    }
    return services_->containers->Stop(request->container_id(), absl::Seconds(request->timeout()));
  });
}

grpc::Status RuntimeService::RemoveContainer(grpc::ServerContext*,
                                             const runtime::v1::RemoveContainerRequest* request,
                                             runtime::v1::RemoveContainerResponse*) {
  return Serve("RemoveContainer", [&]() -> absl::Status {
    if (request->container_id().empty()) {
      return absl::InvalidArgumentError("container_id is required");
    }
    if (services_->HostContainer(request->container_id())) {
      return services_->host->RemoveContainer(request->container_id());
    }
    return services_->containers->Remove(request->container_id());
  });
}

}  // namespace podvisor::cri
