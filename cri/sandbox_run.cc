// RunPodSandbox.

#include "cri/rpc.h"
#include "cri/runtime_service.h"
#include "cri/sandbox_convert.h"

namespace podvisor::cri {

grpc::Status RuntimeService::RunPodSandbox(grpc::ServerContext*,
                                           const runtime::v1::RunPodSandboxRequest* request,
                                           runtime::v1::RunPodSandboxResponse* response) {
  return Serve("RunPodSandbox", [&]() -> absl::Status {
    absl::StatusOr<SandboxConfig> config = FromProto(*request);
    if (!config.ok()) return config.status();
    absl::StatusOr<HandlerKind> handler =
        RouteSandbox(*config, services_->host_pods, services_->host != nullptr);
    if (!handler.ok()) return handler.status();
    absl::StatusOr<std::string> id = *handler == HandlerKind::kHost
                                         ? services_->host->RunSandbox(*config)
                                         : services_->sandboxes->Run(*config);
    if (!id.ok()) return id.status();
    response->set_pod_sandbox_id(*id);
    return absl::OkStatus();
  });
}

}  // namespace podvisor::cri
