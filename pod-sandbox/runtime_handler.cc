#include "pod-sandbox/runtime_handler.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace podvisor {

absl::StatusOr<HostPodPolicy> ParseHostPodPolicy(absl::string_view value) {
  if (value == "host") return HostPodPolicy::kHost;
  if (value == "refuse") return HostPodPolicy::kRefuse;
  return absl::InvalidArgumentError(
      absl::StrCat("host pod policy \"", value, "\" is not one of host, refuse"));
}

std::vector<std::string> HostNeeds(const SandboxConfig& config) {
  std::vector<std::string> needs;
  if (config.network_mode == NamespaceMode::kNode)
    needs.push_back("namespace_options.network=NODE");
  if (config.pid_mode == NamespaceMode::kNode) needs.push_back("namespace_options.pid=NODE");
  if (config.ipc_mode == NamespaceMode::kNode) needs.push_back("namespace_options.ipc=NODE");
  if (config.privileged) needs.push_back("privileged");
  return needs;
}

absl::StatusOr<HandlerKind> RouteSandbox(const SandboxConfig& config, HostPodPolicy policy,
                                         bool host_available) {
  const std::string& name = config.runtime_handler;
  if (name != "" && name != "vm" && name != "host") {
    return absl::InvalidArgumentError(absl::StrCat(
        "runtime handler \"", name, "\" is unknown (this runtime has \"\", \"vm\" and \"host\")"));
  }
  const std::vector<std::string> needs = HostNeeds(config);
  // A privileged pod may run in a VM (privileged only inside its guest, as Kata runs them); the
  // host's namespaces cannot.
  std::vector<std::string> namespaces;
  for (const std::string& n : needs) {
    if (n != "privileged") namespaces.push_back(n);
  }
  HandlerKind kind = HandlerKind::kVm;
  if (name == "host" && config.user_namespace) {
    return absl::InvalidArgumentError(
        "runtime handler \"host\" does not support user namespaces (userns_options mode POD); "
        "use the default or the \"vm\" handler");
  }
  if (name == "host") {
    kind = HandlerKind::kHost;
  } else if (name == "vm") {
    if (!namespaces.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "runtime handler \"vm\" runs the pod in a VM, which cannot share the node's namespaces (",
          absl::StrJoin(namespaces, ", "), "); use the default or the \"host\" handler"));
    }
  } else if (!needs.empty() && !config.user_namespace) {
    // (A pod with a user namespace of its own shares none of the node's namespaces: it is only
    // privileged, and that inside its own user namespace in its VM.)
    if (policy == HostPodPolicy::kRefuse) {
      return absl::InvalidArgumentError(
          absl::StrCat("the pod needs the host (", absl::StrJoin(needs, ", "),
                       ") and this node refuses such pods (handlers.host_pods: refuse)"));
    }
    kind = HandlerKind::kHost;
  }
  if (kind == HandlerKind::kHost && !host_available) {
    return absl::FailedPreconditionError(
        absl::StrCat("the pod goes to the \"host\" handler",
                     needs.empty() ? "" : absl::StrCat(" (", absl::StrJoin(needs, ", "), ")"),
                     ", which is not available on this node (no crun; see handlers.crun)"));
  }
  return kind;
}

std::vector<RuntimeHandlerInfo> RuntimeHandlers(bool host_available) {
  // Recursive read-only volumes: VM pods make them on the host (mount_setattr AT_RECURSIVE on the
  // shared directory's binds; snapshot volumes are read-only disks); the host handler binds a
  // staged copy read-only at every depth (host_rootfs.h, StageRecursiveReadOnly).
  // User namespaces: VM pods only (the agent makes the pod's namespace in the guest and shifts
  // each container's root filesystem into it; agent/user_namespace.h).
  std::vector<RuntimeHandlerInfo> out = {{"", true, true}, {"vm", true, true}};
  if (host_available) out.push_back({"host", true, false});
  return out;
}

}  // namespace podvisor
