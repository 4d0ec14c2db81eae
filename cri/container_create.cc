// CreateContainer.

#include "cri/container_convert.h"
#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {

grpc::Status RuntimeService::CreateContainer(grpc::ServerContext*,
                                             const runtime::v1::CreateContainerRequest* request,
                                             runtime::v1::CreateContainerResponse* response) {
  return Serve("CreateContainer", [&]() -> absl::Status {
    if (request->pod_sandbox_id().empty()) {
      return absl::InvalidArgumentError("pod_sandbox_id is required");
    }
    absl::StatusOr<ContainerConfig> config = FromProto(request->config());
    if (!config.ok()) return config.status();
    absl::StatusOr<std::string> id;
    if (services_->HostSandbox(request->pod_sandbox_id())) {
      id = services_->host->CreateContainer(request->pod_sandbox_id(), *config);
    } else {
      if (config->node_pid) {
        return absl::InvalidArgumentError(
            "namespace_options.pid=NODE: a pod VM cannot share the node's PID namespace; run the "
            "pod on the \"host\" handler (a pod with namespace_options.pid=NODE goes there by "
            "default)");
      }
      for (const ContainerMount& m : config->mounts) {
        if (m.propagation != MountPropagation::kBidirectional) continue;
        return absl::InvalidArgumentError(absl::StrCat(
            "mount of ", m.host_path, " at ", m.container_path,
            ": bidirectional mount propagation cannot cross the pod VM (a mount made inside it "
            "never reaches the host); use HostToContainer or None, or run the pod on the "
            "\"host\" handler"));
      }
      id = services_->containers->Create(request->pod_sandbox_id(), *config);
    }
    if (!id.ok()) return id.status();
    response->set_container_id(*id);
    return absl::OkStatus();
  });
}

}  // namespace podvisor::cri
