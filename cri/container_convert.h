#pragma once

// Conversions between runtime.v1 container messages and pod-sandbox/ domain types.

#include "absl/status/statusor.h"
#include "pod-sandbox/container.h"
#include "pod-sandbox/container_controller.h"
#include "runtime/v1/api.pb.h"

namespace podvisor::cri {

runtime::v1::ContainerState ToProto(ContainerState state);
// INVALID_ARGUMENT for requests that are malformed or that a pod VM cannot honour.
absl::StatusOr<ContainerConfig> FromProto(const runtime::v1::ContainerConfig& config);
ContainerLimits FromProto(const runtime::v1::LinuxContainerResources& resources);
void ToProto(const ContainerLimits& limits, runtime::v1::LinuxContainerResources* out);
ContainerFilter FromProto(const runtime::v1::ContainerFilter& filter);
ContainerFilter FromProto(const runtime::v1::ContainerStatsFilter& filter);
void ToProto(const Container& c, runtime::v1::Container* out);
void ToProto(const Container& c, runtime::v1::ContainerStatus* out);
void ToProto(const ContainerStatsInfo& info, runtime::v1::ContainerStats* out);
// ContainerStatus verbose info: {"info": JSON} as crictl inspect shows it.
std::string VerboseInfo(const Container& c);

}  // namespace podvisor::cri
