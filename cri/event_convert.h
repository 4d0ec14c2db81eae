#pragma once

// ContainerEventResponse from a ContainerEvent (pod-sandbox/container_events.h).

#include <optional>
#include <vector>

#include "pod-sandbox/container_events.h"
#include "runtime/v1/api.pb.h"

namespace podvisor::cri {

runtime::v1::ContainerEventType ToProto(ContainerEventType type);

// `sandbox` and `containers` are the event's pod and its containers as they are now; the
// event's own record (its container's, or for a sandbox event its sandbox's) replaces the
// current one, so that a STARTED event never shows its container already exited. A deleted
// container is not among the statuses; a deleted sandbox's status is its last record.
void ToProto(const ContainerEvent& event, const std::optional<Sandbox>& sandbox,
             const std::vector<Container>& containers, runtime::v1::ContainerEventResponse* out);

}  // namespace podvisor::cri
