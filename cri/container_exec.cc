// Exec and Attach: check the container, register the session with the streaming server and
// return its URL. The session itself runs in ContainerStreamingRuntime.

#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {
namespace {

// The container must exist and be running; returns its full id.
absl::StatusOr<std::string> RunningContainer(Services* services, const std::string& id,
                                             absl::string_view what) {
  if (id.empty()) return absl::InvalidArgumentError("container_id is required");
  if (services->streaming == nullptr) {
    return absl::UnavailableError(absl::StrCat(what, ": the streaming server is not running"));
  }
  absl::StatusOr<Container> c = services->HostContainer(id) ? services->host->InspectContainer(id)
                                                           : services->containers->Inspect(id);
  if (!c.ok()) return c.status();
  if (c->status.state != ContainerState::kRunning) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": container ", c->metadata.id.substr(0, 12), " is not running"));
  }
  return c->metadata.id;
}

}  // namespace

grpc::Status RuntimeService::Exec(grpc::ServerContext*, const runtime::v1::ExecRequest* request,
                                  runtime::v1::ExecResponse* response) {
  return Serve("Exec", [&]() -> absl::Status {
    absl::StatusOr<std::string> id = RunningContainer(services_, request->container_id(), "exec");
    if (!id.ok()) return id.status();
    streaming::ExecRequest r;
    r.container_id = *id;
    r.cmd.assign(request->cmd().begin(), request->cmd().end());
    r.tty = request->tty();
    r.in = request->stdin();
    r.out = request->stdout();
    r.err = request->stderr();
    absl::StatusOr<std::string> url = services_->streaming->GetExecUrl(r);
    if (!url.ok()) return url.status();
    response->set_url(*url);
    return absl::OkStatus();
  });
}

grpc::Status RuntimeService::Attach(grpc::ServerContext*, const runtime::v1::AttachRequest* request,
                                    runtime::v1::AttachResponse* response) {
  return Serve("Attach", [&]() -> absl::Status {
    absl::StatusOr<std::string> id = RunningContainer(services_, request->container_id(), "attach");
    if (!id.ok()) return id.status();
    streaming::AttachRequest r;
    r.container_id = *id;
    r.tty = request->tty();
    r.in = request->stdin();
    r.out = request->stdout();
    r.err = request->stderr();
    absl::StatusOr<std::string> url = services_->streaming->GetAttachUrl(r);
    if (!url.ok()) return url.status();
    response->set_url(*url);
    return absl::OkStatus();
  });
}

}  // namespace podvisor::cri
