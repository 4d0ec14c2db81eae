#pragma once

// How a container's host-path mounts reach its pod VM: one implementation per mode, chosen once
// per sandbox (ContainerController::VolumesFor).
//   SharedDirectoryVolumes  the host paths bind-mounted under the sandbox's shared directory,
//                           which the VM sees live through its filesystem device (virtiofs; the
//                           device is the sandbox's, chosen at RunPodSandbox)
//   SnapshotVolumes         no shared directory: each read-only host path packed into an erofs
//                           image and hot-plugged as a disk (writable ones are refused)
// A further mode is one more implementation of VolumeShare.

#include <string>

#include "absl/status/status.h"
#include "pod-sandbox/agent_client.h"
#include "pod-sandbox/container.h"
#include "pod-sandbox/sandbox.h"

namespace podvisor {

// What a container's volumes became; kept in its record (ContainerMetadata).
struct ContainerVolumes {
  std::vector<VolumeDisk> disks;
  std::vector<SharedVolume> shared;
};

class VolumeShare {
 public:
  virtual ~VolumeShare() = default;
  // Makes the host-path mounts of `config` reachable from the sandbox's guest; on failure leaves
  // nothing behind. The caller serialises the operations on one sandbox.
  virtual absl::StatusOr<ContainerVolumes> Attach(const Sandbox& sandbox, AgentClient& agent,
                                                  const std::string& container_id,
                                                  const ContainerConfig& config) = 0;
  // Undoes Attach. `agent` null: the VM is gone or going. Never touches the host data.
  virtual void Detach(const Sandbox& sandbox, AgentClient* agent, const std::string& container_id,
                      const ContainerVolumes& volumes) = 0;
};

}  // namespace podvisor
