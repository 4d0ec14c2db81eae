// ContainerStats and ListContainerStats, from the guest's cgroup figures.

#include "cri/container_convert.h"
#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {

grpc::Status RuntimeService::ContainerStats(grpc::ServerContext*,
                                            const runtime::v1::ContainerStatsRequest* request,
                                            runtime::v1::ContainerStatsResponse* response) {
  return Serve("ContainerStats", [&]() -> absl::Status {
    if (request->container_id().empty()) {
      return absl::InvalidArgumentError("container_id is required");
    }
    absl::StatusOr<ContainerStatsInfo> s = services_->HostContainer(request->container_id())
                                               ? services_->host->Stats(request->container_id())
                                               : services_->containers->Stats(request->container_id());
    if (!s.ok()) return s.status();
    ToProto(*s, response->mutable_stats());
    return absl::OkStatus();
  });
}

grpc::Status RuntimeService::ListContainerStats(
    grpc::ServerContext*, const runtime::v1::ListContainerStatsRequest* request,
    runtime::v1::ListContainerStatsResponse* response) {
  return Serve("ListContainerStats", [&] {
    const ContainerFilter filter = FromProto(request->filter());
    for (const ContainerStatsInfo& s : services_->containers->ListStats(filter)) {
      ToProto(s, response->add_stats());
    }
    if (services_->host) {
      for (const ContainerStatsInfo& s : services_->host->ListStats(filter)) {
        ToProto(s, response->add_stats());
      }
    }
    return absl::OkStatus();
  });
}

}  // namespace podvisor::cri
