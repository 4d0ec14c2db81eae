#pragma once

#include "pod-sandbox/volume_share.h"

namespace podvisor {

// Volumes through the sandbox's shared directory: each host path is bind-mounted on the host at
// <shared_dir>/<container id>/<n> (read-only there too when the mount is), which the guest sees
// at kGuestSharedDir/<container id>/<n> and crun binds at the container path. Live both ways.
// Only the host side is built here; how the VM reaches the directory (its filesystem device and
// the guest's filesystem type) is the sandbox's. Stateless and thread-safe.
class SharedDirectoryVolumes : public VolumeShare {
 public:
  absl::StatusOr<ContainerVolumes> Attach(const Sandbox& sandbox, AgentClient& agent,
                                          const std::string& container_id,
                                          const ContainerConfig& config) override;
  void Detach(const Sandbox& sandbox, AgentClient* agent, const std::string& container_id,
              const ContainerVolumes& volumes) override;
};

}  // namespace podvisor
