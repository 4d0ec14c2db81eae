// ExecSync: runs a command in a container and returns its output and exit code.

#include "cri/container_convert.h"
#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {

grpc::Status RuntimeService::ExecSync(grpc::ServerContext*,
                                      const runtime::v1::ExecSyncRequest* request,
                                      runtime::v1::ExecSyncResponse* response) {
  return Serve("ExecSync", [&]() -> absl::Status {
    if (request->container_id().empty()) {
      return absl::InvalidArgumentError("container_id is required");
    }
    if (request->timeout() < 0) return absl::InvalidArgumentError("timeout must not be negative");
    std::vector<std::string> cmd(request->cmd().begin(), request->cmd().end());
    const absl::Duration timeout = absl::Seconds(request->timeout());
    absl::StatusOr<ExecSyncResult> r =
        services_->HostContainer(request->container_id())
            ? services_->host->ExecSync(request->container_id(), cmd, timeout)
            : services_->containers->ExecSync(request->container_id(), cmd, timeout);
    if (!r.ok()) return r.status();
    response->set_stdout(std::move(r->stdout_data));
    response->set_stderr(std::move(r->stderr_data));
    response->set_exit_code(r->exit_code);
    return absl::OkStatus();
  });
}

}  // namespace podvisor::cri
