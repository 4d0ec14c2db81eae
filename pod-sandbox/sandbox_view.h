#pragma once

// The view of pod sandboxes their containers need (ContainerController): a ready sandbox's agent
// and host-side stats, the list, and the hooks that tell of sandbox events. SandboxController is
// the implementation; test/fakes/fake_sandbox_view.h is the test double.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "pod-sandbox/agent_client.h"
#include "pod-sandbox/host_stats.h"
#include "pod-sandbox/sandbox.h"

namespace podvisor {

// What a READY sandbox's VM costs the node, read on the host.
struct VmHostStats {
  int64_t timestamp_ns = 0;
  pid_t qemu_pid = 0;
  std::optional<ProcessCost> vm;           // unset when the QEMU process could not be read
  std::string default_interface;           // the CNI interface in the pod's netns ("eth0")
  std::vector<InterfaceUsage> interfaces;  // in the pod's netns, loopback left out
};

// What the owner of a sandbox's containers learns about the sandbox (ContainerController).
struct SandboxHooks {
  // Each event the sandbox's agent sends (on the agent's reader thread; must not block long).
  std::function<void(const std::string& sandbox_id, const AgentEvent& event)> on_agent_event;
  // The sandbox's VM is gone: stopped on request (under the sandbox's lock) or lost.
  std::function<void(const std::string& sandbox_id)> on_stopped;
  // Before a sandbox's record is removed (its VM is already stopped): its containers go first.
  std::function<absl::Status(const std::string& sandbox_id)> before_remove;
};

class SandboxView {
 public:
  virtual ~SandboxView() = default;
  // The agent of a READY sandbox. FAILED_PRECONDITION otherwise.
  virtual absl::StatusOr<std::shared_ptr<AgentClient>> Agent(const std::string& id) = 0;
  // The host side of a READY sandbox's stats: FAILED_PRECONDITION when it is not ready.
  virtual absl::StatusOr<VmHostStats> HostStats(const std::string& id) = 0;
  virtual std::vector<Sandbox> List(const SandboxFilter& filter) const = 0;
  // Set once, before recovery and before serving.
  virtual void SetHooks(SandboxHooks hooks) = 0;
};

}  // namespace podvisor
