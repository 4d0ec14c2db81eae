#pragma once

// The runtime handlers a pod can run under (docs/runtime-handlers.md) and the routing of
// RunPodSandbox to one of them:
//
//   ""      the default: a VM, unless the pod needs the host (host network, PID or IPC namespace,
//           or a privileged sandbox), which goes to the host handler (or is refused, by config)
//   "vm"    always a VM; host namespaces are refused
//   "host"  always the host: OCI containers run by crun on the node, each with a monitor

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pod-sandbox/sandbox.h"

namespace podvisor {

enum class HandlerKind { kVm, kHost };

// What the default handler does with a pod that needs the host (config handlers.host_pods).
enum class HostPodPolicy { kHost, kRefuse };
// "host" / "refuse"; INVALID_ARGUMENT for anything else.
absl::StatusOr<HostPodPolicy> ParseHostPodPolicy(absl::string_view value);

// Why a pod needs the host, one phrase per reason, in the CRI's own field names
// ("namespace_options.network=NODE", ..., "privileged"); empty when it does not.
std::vector<std::string> HostNeeds(const SandboxConfig& config);

// The handler that runs `config`: INVALID_ARGUMENT naming an unknown runtime_handler, and naming
// what the pod asks for when the chosen handler cannot give it (a host namespace under "vm", or
// under the default handler with HostPodPolicy::kRefuse). `host_available` false (no crun on
// the node): a pod that would go to the host is FAILED_PRECONDITION saying so.
absl::StatusOr<HandlerKind> RouteSandbox(const SandboxConfig& config, HostPodPolicy policy,
                                         bool host_available);

// The handlers Status lists, with their features (CRI RuntimeHandlerFeatures).
struct RuntimeHandlerInfo {
  std::string name;
  bool recursive_read_only_mounts = false;
  bool user_namespaces = false;
};
std::vector<RuntimeHandlerInfo> RuntimeHandlers(bool host_available);

}  // namespace podvisor
