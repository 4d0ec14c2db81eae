#include "cri/event_convert.h"

#include "cri/container_convert.h"
#include "cri/sandbox_convert.h"

namespace podvisor::cri {

runtime::v1::ContainerEventType ToProto(ContainerEventType type) {
  switch (type) {
    case ContainerEventType::kCreated:
      return runtime::v1::CONTAINER_CREATED_EVENT;
    case ContainerEventType::kStarted:
      return runtime::v1::CONTAINER_STARTED_EVENT;
    case ContainerEventType::kStopped:
      return runtime::v1::CONTAINER_STOPPED_EVENT;
    case ContainerEventType::kDeleted:
      return runtime::v1::CONTAINER_DELETED_EVENT;
  }
  return runtime::v1::CONTAINER_CREATED_EVENT;
}

void ToProto(const ContainerEvent& event, const std::optional<Sandbox>& sandbox,
             const std::vector<Container>& containers, runtime::v1::ContainerEventResponse* out) {
  out->set_container_id(event.container_id);
  out->set_container_event_type(ToProto(event.type));
  out->set_created_at(event.created_at_ns);
  const std::optional<Sandbox>& pod = event.sandbox ? event.sandbox : sandbox;
  if (pod) ToProto(SandboxInfo{*pod, false, {}}, out->mutable_pod_sandbox_status());
  bool own_seen = false;
  for (const Container& c : containers) {
    if (event.container && c.metadata.id == event.container->metadata.id) {
      own_seen = true;
      if (event.type == ContainerEventType::kDeleted) continue;
      ToProto(*event.container, out->add_containers_statuses());
      continue;
    }
    ToProto(c, out->add_containers_statuses());
  }
  if (event.container && !own_seen && event.type != ContainerEventType::kDeleted) {
    ToProto(*event.container, out->add_containers_statuses());
  }
}

}  // namespace podvisor::cri
