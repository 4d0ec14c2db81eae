#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "hypervisor/hypervisor.h"
#include "hypervisor/vm_template.h"
#include "network/pod_network.h"
#include "pod-sandbox/agent_client.h"
#include "pod-sandbox/host_stats.h"
#include "pod-sandbox/sandbox.h"
#include "pod-sandbox/sandbox_view.h"

namespace podvisor {

// Opens the agent channel of a VM; AgentClient::Connect in the daemon, a fake in unit tests.
using AgentDialer = std::function<absl::StatusOr<std::unique_ptr<AgentClient>>(
    const std::string& socket_path, AgentClient::Options options)>;

struct SandboxControllerOptions {
  std::string state_dir;  // per-sandbox sockets and VM files go under <state_dir>/vm/
  std::string kernel;
  std::string initrd;
  uint32_t default_vcpus = 1;
  uint64_t default_memory_mib = 256;
  absl::Duration boot_timeout = absl::Seconds(30);
  absl::Duration stop_timeout = absl::Seconds(10);
  // How long a re-attach after a daemon restart waits for a running VM's agent.
  absl::Duration reattach_timeout = absl::Seconds(5);
  // Each VM gets <state_dir>/vm/<id>/shared over virtiofs (SandboxMetadata::shared_dir).
  bool shared_filesystem = false;
  // > 0: the shared directory is a tmpfs of this size (MountSharedDirectory); 0: a plain
  // directory of the state directory's file system.
  uint64_t shared_dir_max_bytes = 0;
  // No frame from a guest's agent for this long: the channel is dead, the sandbox NOTREADY.
  absl::Duration agent_dead_after = absl::Seconds(30);
  // Where the cgroup filesystems are mounted (VM cgroups under the pods' cgroup_parent).
  std::string cgroup_root = "/sys/fs/cgroup";
  // The node's memory; a VM may not be larger. 0: MemTotal from /proc/meminfo.
  uint64_t node_memory_mib = 0;
  // The ready template for a pod's vCPUs and memory, or nullopt (VmTemplateStore::Find in the
  // daemon). Unset: every pod boots cold. Clones need a shared filesystem and a pod network
  // (a template has both devices).
  std::function<std::optional<VmTemplate>(uint32_t vcpus, uint64_t memory_mib)> find_template;
};

// UpdatePodSandboxResources: the pod's new resources (LinuxPodSandboxConfig resources plus
// overhead). 0: unchanged; cpu_quota -1: no quota.
struct SandboxResources {
  // The pod's with its overhead: what the VM (or the host pod's cgroup) is held to.
  int64_t cpu_quota = 0;
  int64_t cpu_period = 0;
  int64_t memory_limit_bytes = 0;
  // The pod's alone: what its containers together may use, in the guest's pod cgroup.
  int64_t containers_cpu_quota = 0;
  int64_t containers_memory_limit_bytes = 0;
};

// Details of a sandbox beyond its record, for PodSandboxStatus verbose info.
struct SandboxInfo {
  Sandbox sandbox;
  bool agent_connected = false;
  VmStatus vm;
};

// Owns the life of pod sandboxes: their durable records, their VMs (through Hypervisor), their
// agents (through AgentClient) and their networks (through PodNetworkManager).
//
// Every RPC-level operation on one sandbox is serialised by a per-sandbox lock; different
// sandboxes proceed in parallel. Every state change is durable before the call returns. A failed
// Run undoes every step. Thread-safe.
class SandboxController : public SandboxView {
 public:
  SandboxController(SandboxControllerOptions options, SandboxStore* sandboxes,
                    Hypervisor* hypervisor, PodNetworkManager* network, AgentDialer dialer);
  ~SandboxController() override;

  // After a daemon restart: re-attaches to running VMs (agent reconnected), marks sandboxes whose
  // VM is gone NOTREADY, finishes cleaning up runs a crash interrupted, and destroys VMs of ours
  // that no record knows.
  absl::Status Recover();

  // Boots the pod's VM, sets up its network and guest; returns the new sandbox id.
  absl::StatusOr<std::string> Run(const SandboxConfig& config);
  // Stops the VM and tears the network down; NOTREADY. Unknown ids succeed.
  absl::Status Stop(const std::string& id_or_prefix);
  // Stops if needed, then removes everything. Unknown ids succeed.
  absl::Status Remove(const std::string& id_or_prefix);
  // Inspect and List see a sandbox once its Run has answered.
  absl::StatusOr<SandboxInfo> Inspect(const std::string& id_or_prefix);
  // The CPU quota goes to the VM's host cgroup (its vCPUs and QEMU threads). Memory cannot grow
  // past the VM's RAM (FAILED_PRECONDITION saying so) and is otherwise left to the containers'
  // own limits. NOT_FOUND for an unknown sandbox, FAILED_PRECONDITION unless READY.
  absl::Status UpdateResources(const std::string& id_or_prefix, const SandboxResources& update);
  std::vector<Sandbox> List(const SandboxFilter& filter) const override;

  // Readiness of the runtime: set once at start, after the hypervisor is initialised and state
  // recovered (which takes seconds), while the daemon already serves. Run, Stop and Remove wait
  // for it.
  void SetReady(absl::Status status);
  // OK when ready; UNAVAILABLE while initialising; the failure if initialisation failed.
  absl::Status ReadyStatus() const;

  // The agent of a READY sandbox (for containers and streaming). FAILED_PRECONDITION otherwise.
  absl::StatusOr<std::shared_ptr<AgentClient>> Agent(const std::string& id) override;

  // The host side of a READY sandbox's stats: FAILED_PRECONDITION when it is not ready. Figures
  // that cannot be read (the process or the netns gone meanwhile) are left out, not errors.
  absl::StatusOr<VmHostStats> HostStats(const std::string& id) override;

  // Set once, before Recover() and before serving.
  void SetHooks(SandboxHooks hooks) override { hooks_ = std::move(hooks); }

  // Closes agent channels without touching the VMs (daemon shutdown: pods keep running).
  void Detach();

 private:
  std::shared_ptr<std::mutex> LockFor(const std::string& id);
  std::optional<VmTemplate> ChooseTemplate(SandboxMetadata& meta);
  // Boots the VM cold, or clones it from `from` when set.
  absl::Status BootVm(const SandboxMetadata& meta, const PodNetwork* net, const VmTemplate* from);
  // Removes the VM's cgroup (pod-sandbox/vm_cgroup.h), if it has one; logs what it cannot.
  void RemoveVmCgroup(const SandboxMetadata& meta);
  absl::StatusOr<std::shared_ptr<AgentClient>> ConnectAgent(const SandboxMetadata& meta,
                                                            absl::Duration timeout);
  absl::Status SetupGuest(AgentClient& agent, const SandboxMetadata& meta, const PodNetwork* net);
  absl::Status StopLocked(const Sandbox& sandbox);
  void MarkNotReady(const std::string& id, const std::string& reason);
  void OnVmExit(const VmExitEvent& event);
  void DropAgent(const std::string& id);
  AgentClient::Options AgentOptions(const std::string& id);

  const SandboxControllerOptions options_;
  SandboxStore* const sandboxes_;
  Hypervisor* const hypervisor_;
  PodNetworkManager* const network_;
  const AgentDialer dialer_;
  SandboxHooks hooks_;

  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<std::mutex>> locks_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<AgentClient>> agents_ ABSL_GUARDED_BY(mu_);
  // Bumped whenever an agent is dropped on purpose, so its disconnect is not taken as a failure.
  std::map<std::string, uint64_t> agent_generation_ ABSL_GUARDED_BY(mu_);
  bool detaching_ ABSL_GUARDED_BY(mu_) = false;
  bool ready_set_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status ready_ ABSL_GUARDED_BY(mu_);

  absl::Status AwaitReady();
};

}  // namespace podvisor
