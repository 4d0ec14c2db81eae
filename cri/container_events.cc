// GetContainerEvents: the event bus (pod-sandbox/container_events.h) as a stream, each event
// with its pod's status and its containers' statuses (kubelet's evented PLEG).

#include "cri/event_convert.h"
#include "cri/rpc.h"
#include "cri/runtime_service.h"

namespace podvisor::cri {
namespace {

// How often a waiting stream looks whether its client went away.
constexpr absl::Duration kCancelPoll = absl::Milliseconds(250);

// The event's pod and its containers as they are now, from the handler that owns them.
void CurrentPod(const Services& services, const ContainerEvent& e, std::optional<Sandbox>* pod,
                std::vector<Container>* containers) {
  SandboxFilter sf;
  sf.id_prefix = e.sandbox_id;
  ContainerFilter cf;
  cf.sandbox_id_prefix = e.sandbox_id;
  std::vector<Sandbox> sandboxes;
  if (e.host) {
    if (services.host == nullptr) return;
    sandboxes = services.host->ListSandboxes(sf);
    *containers = services.host->ListContainers(cf);
  } else {
    sandboxes = services.sandboxes->List(sf);
    *containers = services.containers->List(cf);
  }
  for (Sandbox& s : sandboxes) {
    if (s.metadata.id == e.sandbox_id) *pod = std::move(s);
  }
  std::erase_if(*containers,
                [&](const Container& c) { return c.metadata.sandbox_id != e.sandbox_id; });
}

}  // namespace

grpc::Status RuntimeService::GetContainerEvents(
    grpc::ServerContext* context, const runtime::v1::GetEventsRequest*,
    grpc::ServerWriter<runtime::v1::ContainerEventResponse>* writer) {
  return Serve("GetContainerEvents", [&]() -> absl::Status {
    if (services_->events == nullptr) {
      return absl::UnavailableError("GetContainerEvents: the runtime is not ready");
    }
    absl::StatusOr<std::unique_ptr<ContainerEventBus::Subscription>> sub =
        services_->events->Subscribe();
    if (!sub.ok()) return sub.status();
    // Headers now: the client knows it is subscribed before the first event.
    writer->SendInitialMetadata();
    while (!context->IsCancelled()) {
      auto next = (*sub)->Next(kCancelPoll);
      if (!next.ok()) return next.status();
      if (!next->has_value()) continue;
      const ContainerEvent& e = ***next;
      std::optional<Sandbox> pod;
      std::vector<Container> containers;
      CurrentPod(*services_, e, &pod, &containers);
      runtime::v1::ContainerEventResponse response;
      ToProto(e, pod, containers, &response);
      if (!writer->Write(response)) break;
    }
    return absl::OkStatus();
  });
}

}  // namespace podvisor::cri
