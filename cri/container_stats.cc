// ContainerStats, ListContainerStats and StreamContainerStats, from the guest's cgroup figures.

#include "cri/container_convert.h"
#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {
namespace {

void ListAllStats(const Services& services, const runtime::v1::ContainerStatsFilter& proto_filter,
                  google::protobuf::RepeatedPtrField<runtime::v1::ContainerStats>* out) {
  const ContainerFilter filter = FromProto(proto_filter);
  for (const ContainerStatsInfo& s : services.containers->ListStats(filter)) ToProto(s, out->Add());
  if (services.host) {
    for (const ContainerStatsInfo& s : services.host->ListStats(filter)) ToProto(s, out->Add());
  }
}

}  // namespace

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
    ListAllStats(*services_, request->filter(), response->mutable_stats());
    return absl::OkStatus();
  });
}

grpc::Status RuntimeService::StreamContainerStats(
    grpc::ServerContext*, const runtime::v1::StreamContainerStatsRequest* request,
    grpc::ServerWriter<runtime::v1::StreamContainerStatsResponse>* writer) {
  return Serve("StreamContainerStats", [&] {
    google::protobuf::RepeatedPtrField<runtime::v1::ContainerStats> items;
    ListAllStats(*services_, request->filter(), &items);
    return WritePaged(
        "StreamContainerStats", writer, &items,
        [](runtime::v1::StreamContainerStatsResponse& m) { return m.mutable_container_stats(); });
  });
}

}  // namespace podvisor::cri
