// ListPodSandbox.

#include "cri/rpc.h"
#include "cri/runtime_service.h"
#include "cri/sandbox_convert.h"

namespace podvisor::cri {

grpc::Status RuntimeService::ListPodSandbox(grpc::ServerContext*,
                                            const runtime::v1::ListPodSandboxRequest* request,
                                            runtime::v1::ListPodSandboxResponse* response) {
  return Serve("ListPodSandbox", [&] {
    const SandboxFilter filter = FromProto(request->filter());
    for (const Sandbox& s : services_->sandboxes->List(filter)) ToProto(s, response->add_items());
    if (services_->host) {
      for (const Sandbox& s : services_->host->ListSandboxes(filter)) {
        ToProto(s, response->add_items());
      }
    }
    return absl::OkStatus();
  });
}

}  // namespace podvisor::cri
