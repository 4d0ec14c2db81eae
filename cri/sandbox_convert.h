#pragma once

// Conversions between runtime.v1 sandbox messages and pod-sandbox/ domain types.

#include "pod-sandbox/container_controller.h"
#include "pod-sandbox/sandbox.h"
#include "pod-sandbox/sandbox_controller.h"
#include "runtime/v1/api.pb.h"

namespace podvisor::cri {

runtime::v1::PodSandboxState ToProto(SandboxState state);
SandboxState FromProto(runtime::v1::PodSandboxState state);
void ToProto(const Sandbox& sandbox, runtime::v1::PodSandbox* out);
SandboxFilter FromProto(const runtime::v1::PodSandboxFilter& filter);
// INVALID_ARGUMENT for requests no VM sandbox can honour or that are malformed.
absl::StatusOr<SandboxConfig> FromProto(const runtime::v1::RunPodSandboxRequest& request);
void ToProto(const SandboxInfo& info, runtime::v1::PodSandboxStatus* out);
SandboxFilter FromProto(const runtime::v1::PodSandboxStatsFilter& filter);
// PodSandboxStats: see docs/containers.md for what each figure means.
void ToProto(const SandboxStatsInfo& info, runtime::v1::PodSandboxStats* out);
// NamespaceOption.userns_options: unset, or mode NODE (without mappings), is none; mode POD is
// its one uid and one gid range. INVALID_ARGUMENT for other modes (CONTAINER, TARGET: no runtime
// has them), other numbers of ranges, or ranges ValidatePodUserNamespace refuses.
absl::StatusOr<std::optional<PodUserNamespace>> UserNamespaceFromProto(
    const runtime::v1::NamespaceOption& ns);
// PodSandboxStatus verbose info: {"info": JSON} as crictl inspectp shows it.
std::string VerboseInfo(const SandboxInfo& info);

}  // namespace podvisor::cri
