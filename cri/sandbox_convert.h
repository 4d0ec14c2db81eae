#pragma once

// Conversions between runtime.v1 sandbox messages and pod-sandbox/ domain types.

#include "pod-sandbox/sandbox.h"
#include "runtime/v1/api.pb.h"

namespace podvisor::cri {

runtime::v1::PodSandboxState ToProto(SandboxState state);
SandboxState FromProto(runtime::v1::PodSandboxState state);
void ToProto(const Sandbox& sandbox, runtime::v1::PodSandbox* out);
SandboxFilter FromProto(const runtime::v1::PodSandboxFilter& filter);

}  // namespace podvisor::cri
