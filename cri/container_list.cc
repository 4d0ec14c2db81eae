// ListContainers and StreamContainers.

#include "cri/container_convert.h"
#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {
namespace {

void ListAll(const Services& services, const runtime::v1::ContainerFilter& proto_filter,
             google::protobuf::RepeatedPtrField<runtime::v1::Container>* out) {
  const ContainerFilter filter = FromProto(proto_filter);
  for (const Container& c : services.containers->List(filter)) ToProto(c, out->Add());
  if (services.host) {
    for (const Container& c : services.host->ListContainers(filter)) ToProto(c, out->Add());
  }
}

}  // namespace

grpc::Status RuntimeService::ListContainers(grpc::ServerContext*,
                                            const runtime::v1::ListContainersRequest* request,
                                            runtime::v1::ListContainersResponse* response) {
  return Serve("ListContainers", [&] {
    ListAll(*services_, request->filter(), response->mutable_containers());
    return absl::OkStatus();
  });
}

grpc::Status RuntimeService::StreamContainers(
    grpc::ServerContext*, const runtime::v1::StreamContainersRequest* request,
    grpc::ServerWriter<runtime::v1::StreamContainersResponse>* writer) {
  return Serve("StreamContainers", [&] {
    google::protobuf::RepeatedPtrField<runtime::v1::Container> items;
    ListAll(*services_, request->filter(), &items);
    return WritePaged(
        "StreamContainers", writer, &items,
        [](runtime::v1::StreamContainersResponse& m) { return m.mutable_containers(); });
  });
}

}  // namespace podvisor::cri
