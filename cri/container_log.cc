// ReopenContainerLog: kubelet rotated the log file.

#include "cri/container_convert.h"
#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {

grpc::Status RuntimeService::ReopenContainerLog(
    grpc::ServerContext*, const runtime::v1::ReopenContainerLogRequest* request,
    runtime::v1::ReopenContainerLogResponse*) {
  return Serve("ReopenContainerLog", [&]() -> absl::Status {
    if (request->container_id().empty()) {
      return absl::InvalidArgumentError("container_id is required");
    }
    if (services_->HostContainer(request->container_id())) {
      return services_->host->ReopenLog(request->container_id());
    }
    return services_->containers->ReopenLog(request->container_id());
  });
}

}  // namespace podvisor::cri
