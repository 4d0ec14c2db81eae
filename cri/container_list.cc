// ListContainers.

#include "cri/container_convert.h"
#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {

grpc::Status RuntimeService::ListContainers(grpc::ServerContext*,
                                            const runtime::v1::ListContainersRequest* request,
                                            runtime::v1::ListContainersResponse* response) {
  return Serve("ListContainers", [&] {
    const ContainerFilter filter = FromProto(request->filter());
    for (const Container& c : services_->containers->List(filter)) {
      ToProto(c, response->add_containers());
    }
    if (services_->host) {
      for (const Container& c : services_->host->ListContainers(filter)) {
        ToProto(c, response->add_containers());
      }
    }
    return absl::OkStatus();
  });
}

}  // namespace podvisor::cri
