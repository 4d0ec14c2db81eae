#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/json_optional.h"
#include "nlohmann/json.hpp"
#include "pod-sandbox/user_namespace.h"
#include "store/object_store.h"

namespace podvisor {

enum class SandboxState { kReady, kNotReady };

NLOHMANN_JSON_SERIALIZE_ENUM(SandboxState, {{SandboxState::kReady, "ready"},
                                            {SandboxState::kNotReady, "notready"}})

struct SandboxDns {
  std::vector<std::string> servers;
  std::vector<std::string> searches;
  std::vector<std::string> options;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(SandboxDns, servers, searches, options)

struct SandboxPortMapping {
  std::string protocol = "tcp";
  int32_t container_port = 0;
  int32_t host_port = 0;
  std::string host_ip;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(SandboxPortMapping, protocol, container_port,
                                                host_port, host_ip)

// The CRI NamespaceMode values (POD, CONTAINER, NODE, TARGET).
enum class NamespaceMode { kPod = 0, kContainer = 1, kNode = 2, kTarget = 3 };

// What RunPodSandbox asks for, in domain terms (converted from runtime.v1.PodSandboxConfig).
struct SandboxConfig {
  std::string pod_name;
  std::string pod_namespace;
  std::string pod_uid;
  uint32_t attempt = 0;
  std::string hostname;
  std::string log_directory;
  std::optional<SandboxDns> dns;
  std::vector<SandboxPortMapping> port_mappings;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  std::string runtime_handler;
  std::string cgroup_parent;
  std::map<std::string, std::string> sysctls;
  NamespaceMode network_mode = NamespaceMode::kPod;
  NamespaceMode pid_mode = NamespaceMode::kPod;
  NamespaceMode ipc_mode = NamespaceMode::kPod;
  // linux.security_context.privileged: the pod's containers may be privileged.
  bool privileged = false;
  // namespace_options.userns_options mode POD; unset: the node's (mode NODE).
  std::optional<PodUserNamespace> user_namespace{};
  // Pod-level resources (LinuxPodSandboxConfig.resources + overhead); 0 = not set.
  int64_t cpu_quota = 0;
  int64_t cpu_period = 0;
  int64_t memory_limit_bytes = 0;
};

// What a sandbox was created with; never changes afterwards.
struct SandboxMetadata {
  std::string id;
  // Unique among live sandboxes: "<name>_<namespace>_<uid>_<attempt>", as kubelet expects.
  std::string name;
  std::string pod_name;
  std::string pod_namespace;
  std::string pod_uid;
  uint32_t attempt = 0;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  std::string runtime_handler;  // as RunPodSandbox named it ("" for the default handler)
  // The handler that runs the pod, "vm" or "host" (pod-sandbox/runtime_handler.h); records made
  // before there were handlers are VM pods.
  std::string handler = "vm";
  std::string log_directory;
  std::string hostname;
  int64_t created_at_ns = 0;
  std::optional<SandboxDns> dns;
  std::vector<SandboxPortMapping> port_mappings;
  std::map<std::string, std::string> sysctls;
  NamespaceMode network_mode = NamespaceMode::kPod;
  NamespaceMode pid_mode = NamespaceMode::kPod;
  NamespaceMode ipc_mode = NamespaceMode::kPod;
  uint32_t vcpus = 1;
  uint64_t memory_mib = 256;
  // The pod's cgroupfs parent (LinuxPodSandboxConfig.cgroup_parent); the VM's processes run in
  // <cgroup_parent>/podvisor-<id> (pod-sandbox/vm_cgroup.h). Empty: no cgroup of its own.
  std::string cgroup_parent;
  std::string state_dir;  // sockets and VM files for this sandbox
  // The host directory shared with the guest (<state_dir>/shared), under which containers'
  // host-path volumes are bind-mounted; empty: the VM has no shared filesystem.
  std::string shared_dir;
  // Host handler only: whether the pod is privileged.
  bool privileged = false;
  // How shared_dir reaches the guest: "virtiofs" (cold boots) or "9p" (template clones).
  std::string shared_fs_transport;
  // The template the VM was cloned from; empty: booted cold.
  std::string template_key;
  // The pod's user namespace (every container joins it); unset: none of its own.
  std::optional<PodUserNamespace> user_namespace{};
};

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(
    SandboxMetadata, id, name, pod_name, pod_namespace, pod_uid, attempt, labels, annotations,
    runtime_handler, handler, log_directory, hostname, created_at_ns, dns, port_mappings, sysctls,
    network_mode, pid_mode, ipc_mode, vcpus, memory_mib, cgroup_parent, state_dir, shared_dir,
    shared_fs_transport, template_key, privileged, user_namespace)

// What changes over a sandbox's life.
struct SandboxStatus {
  SandboxState state = SandboxState::kNotReady;
  // False until RunPodSandbox finished: a record left false by a crash is cleaned up at start.
  bool run_completed = false;
  // True once StopPodSandbox tore the VM and the network down.
  bool stopped = false;
  std::string reason;  // why NOTREADY, when it was not asked for
  int64_t vm_pid = 0;
  std::string accelerator;
  int64_t boot_ms = 0;  // VM create -> agent handshake
  std::string agent_version;
  std::string kernel_release;
  std::string ip;
  std::vector<std::string> additional_ips;
};

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(SandboxStatus, state, run_completed, stopped,
                                                reason, vm_pid, accelerator, boot_ms,
                                                agent_version, kernel_release, ip, additional_ips)

using Sandbox = StoredObject<SandboxMetadata, SandboxStatus>;
using SandboxStore = ObjectStore<SandboxMetadata, SandboxStatus>;

// ListPodSandbox's filter; unset fields match everything.
struct SandboxFilter {
  std::string id_prefix;
  std::optional<SandboxState> state;
  std::map<std::string, std::string> label_selector;  // every pair must match
};

bool SandboxMatches(const Sandbox& sandbox, const SandboxFilter& filter);

// The unique name kubelet's metadata maps to.
std::string SandboxName(const std::string& name, const std::string& ns, const std::string& uid,
                        uint32_t attempt);

// A new random 64-hex-digit id, as containerd and CRI-O make them.
std::string NewObjectId();

// The first 12 characters of an id, as logs and crictl show it.
inline std::string ShortId(const std::string& id) { return id.substr(0, 12); }

}  // namespace podvisor
