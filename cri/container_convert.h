#pragma once

// Conversions between runtime.v1 container messages and pod-sandbox/ domain types.

#include "absl/status/statusor.h"
#include "pod-sandbox/container.h"
#include "pod-sandbox/container_controller.h"
#include "runtime/v1/api.pb.h"

namespace podvisor::cri {

runtime::v1::ContainerState ToProto(ContainerState state);
// The Linux number of a CRI Signal; 0 for RUNTIME_DEFAULT (or a value this build does not know).
int SignalNumber(runtime::v1::Signal signal);
// The CRI Signal of a Linux signal number (the first name of numbers with two); RUNTIME_DEFAULT
// for a number that has none.
runtime::v1::Signal ToProtoSignal(int number);
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
