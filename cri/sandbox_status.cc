// PodSandboxStatus.

#include "absl/time/clock.h"
#include "cri/rpc.h"
#include "cri/runtime_service.h"
#include "cri/sandbox_convert.h"

namespace podvisor::cri {

grpc::Status RuntimeService::PodSandboxStatus(grpc::ServerContext*,
                                              const runtime::v1::PodSandboxStatusRequest* request,
                                              runtime::v1::PodSandboxStatusResponse* response) {
  return Serve("PodSandboxStatus", [&]() -> absl::Status {
    if (request->pod_sandbox_id().empty()) {
      return absl::InvalidArgumentError("pod_sandbox_id is required");
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
    ToProto(*info, response->mutable_status());
    response->set_timestamp(absl::ToUnixNanos(absl::Now()));
    if (request->verbose()) (*response->mutable_info())["info"] = VerboseInfo(*info);
    return absl::OkStatus();
  });
}

}  // namespace podvisor::cri
