// UpdateContainerResources: new cgroup limits for a created or running container, applied in
// its pod VM at once.

#include "cri/container_convert.h"
#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {

grpc::Status RuntimeService::UpdateContainerResources(
    grpc::ServerContext*, const runtime::v1::UpdateContainerResourcesRequest* request,
    runtime::v1::UpdateContainerResourcesResponse*) {
  return Serve("UpdateContainerResources", [&]() -> absl::Status {
    if (request->container_id().empty()) {
      return absl::InvalidArgumentError("container_id is required");
    }
    if (!request->has_linux()) {
      return absl::InvalidArgumentError("linux resources are required (a pod VM is Linux)");
    }
    if (services_->HostContainer(request->container_id())) {
      return services_->host->UpdateResources(request->container_id(),
                                              FromProto(request->linux()));
    }
    return services_->containers->UpdateResources(request->container_id(),
                                                  FromProto(request->linux()));
  });
}

}  // namespace podvisor::cri
