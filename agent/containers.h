#pragma once

// Containers in the guest: OCI bundles run with crun, their stdio carried over the channel.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "agent/options.h"
#include "agent/result.h"
#include "agent/v1/agent.pb.h"

namespace podvisor::agent {

class AgentServer;

// Thread-safe.
class ContainerManager {
 public:
  ContainerManager(const AgentOptions& options, AgentServer* server);
  ~ContainerManager();

  // Whether crun is present (reported as the "containers" feature).
  bool Available() const;

  // `user`: the identity the init process was given (see ResolveUser), when created.
  Error Create(const v1::CreateContainerRequest& req, v1::User* user);
  v1::Response Start(const v1::StartContainerRequest& req);
  Error Signal(const v1::SignalProcessRequest& req);
  v1::Response Wait(const v1::WaitProcessRequest& req);
  Error Remove(const v1::RemoveContainerRequest& req);
  v1::Response Exec(const v1::ExecProcessRequest& req);
  Error Resize(const v1::ResizeTtyRequest& req);
  v1::Response Stats(const v1::StatsRequest& req);
  // Every container this agent holds (created, running or exited, until removed).
  v1::Response List() const;
  // crun update of a created or running container's cgroup, then oom_score_adj when asked.
  Error UpdateResources(const v1::UpdateContainerResourcesRequest& req);
  // The pod's limits on the cgroup above every container's (UpdatePodResourcesRequest).
  Error UpdatePodResources(const v1::UpdatePodResourcesRequest& req);
  // A restarted host takes a container's output (and stdin) over on new stream ids.
  v1::Response AttachOutput(const v1::AttachOutputRequest& req);
  // The host consumed the first `offset` bytes of output stream `stream_id`.
  void AckOutput(uint32_t stream_id, uint64_t offset);
  // A new host said Hello: output stream ids of the previous one mean nothing now; output is held
  // (bounded) until the new host re-attaches.
  void HostChanged();
  // SIGTERM to every container, SIGKILL after grace_ms.
  void StopAll(uint32_t grace_ms);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace podvisor::agent
