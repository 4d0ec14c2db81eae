// PortForward: check the sandbox, register the session with the streaming server and return its
// URL. Each forwarded connection then runs in ContainerStreamingRuntime::PortForward.

#include "common/status_util.h"
#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {

grpc::Status RuntimeService::PortForward(grpc::ServerContext*,
                                         const runtime::v1::PortForwardRequest* request,
                                         runtime::v1::PortForwardResponse* response) {
  return Serve("PortForward", [&]() -> absl::Status {
    if (request->pod_sandbox_id().empty()) {
      return absl::InvalidArgumentError("pod_sandbox_id is required");
    }
    if (services_->streaming == nullptr) {
      return absl::UnavailableError("port-forward: the streaming server is not running");
    }
    streaming::PortForwardRequest r;
    r.ports.assign(request->port().begin(), request->port().end());
    // Ports out of range, or more than the server forwards for one request.
    if (absl::Status s = services_->streaming->CheckPortForward(r); !s.ok()) {
      return WithContext(s, "port-forward");
    }
    absl::StatusOr<SandboxInfo> info;
    if (services_->HostSandbox(request->pod_sandbox_id())) {
      absl::StatusOr<Sandbox> sandbox = services_->host->InspectSandbox(request->pod_sandbox_id());
      if (!sandbox.ok()) return sandbox.status();
      info = SandboxInfo{*sandbox, false, {}};
    } else {
      info = services_->sandboxes->Inspect(request->pod_sandbox_id());
    }
    if (!info.ok()) return info.status();
    if (info->sandbox.status.state != SandboxState::kReady) {
      return absl::FailedPreconditionError(absl::StrCat(
          "port-forward: pod sandbox ", info->sandbox.metadata.id.substr(0, 12), " is not ready"));
    }
    r.sandbox_id = info->sandbox.metadata.id;
    absl::StatusOr<std::string> url = services_->streaming->GetPortForwardUrl(r);
    if (!url.ok()) return url.status();
    response->set_url(*url);
    return absl::OkStatus();
  });
}

}  // namespace podvisor::cri
