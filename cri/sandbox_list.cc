// ListPodSandbox.

#include "cri/rpc.h"
#include "cri/runtime_service.h"
#include "cri/sandbox_convert.h"

namespace podvisor::cri {

grpc::Status RuntimeService::ListPodSandbox(grpc::ServerContext*,
                                            const runtime::v1::ListPodSandboxRequest* request,
                                            runtime::v1::ListPodSandboxResponse* response) {
  return Serve("ListPodSandbox", [&] {
    for (const Sandbox& s : services_->sandboxes->List(FromProto(request->filter()))) {
      ToProto(s, response->add_items());
    }
    return absl::OkStatus();
  });
}

}  // namespace podvisor::cri
