// ContainerStatus.

#include "cri/container_convert.h"
#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {

grpc::Status RuntimeService::ContainerStatus(grpc::ServerContext*,
                                             const runtime::v1::ContainerStatusRequest* request,
                                             runtime::v1::ContainerStatusResponse* response) {
  return Serve("ContainerStatus", [&]() -> absl::Status {
    if (request->container_id().empty()) {
      return absl::InvalidArgumentError("container_id is required");
    }
    absl::StatusOr<Container> c = services_->HostContainer(request->container_id())
                                      ? services_->host->InspectContainer(request->container_id())
                                      : services_->containers->Inspect(request->container_id());
    if (!c.ok()) return c.status();
    ToProto(*c, response->mutable_status());
    if (request->verbose()) (*response->mutable_info())["info"] = VerboseInfo(*c);
    return absl::OkStatus();
  });
}

}  // namespace podvisor::cri
