// StartContainer.

#include "cri/container_convert.h"
#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {

grpc::Status RuntimeService::StartContainer(grpc::ServerContext*,
                                            const runtime::v1::StartContainerRequest* request,
                                            runtime::v1::StartContainerResponse*) {
  return Serve("StartContainer", [&]() -> absl::Status {
    if (request->container_id().empty()) {
      return absl::InvalidArgumentError("container_id is required");
    }
    if (services_->HostContainer(request->container_id())) {
      return services_->host->StartContainer(request->container_id());
    }
    return services_->containers->Start(request->container_id());
  });
}

}  // namespace podvisor::cri
