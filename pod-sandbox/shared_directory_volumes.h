#pragma once

#include "pod-sandbox/volume_share.h"

namespace podvisor {

// Volumes through the sandbox's shared directory: each host path is
// bind-mounted on the host at <shared_dir>/<container id>/<n>, which the guest
// sees at kGuestSharedDir/<container id>/<n> and crun binds at the container
// path. Live both ways. Guest root can write the shared directory, so the host
// binds are where read-only (top mount, or every depth for
// recursive_read_only), nosuid and nodev (every depth) are enforced, and every
// host operation in the directory is relative to a descriptor with no symlink
// followed (common/safe_path.h). Only the host side is built here; how the VM
// reaches the directory (its filesystem device and the guest's filesystem type)
// is the sandbox's. Stateless and thread-safe.
class SharedDirectoryVolumes : public VolumeShare {
public:
  absl::StatusOr<ContainerVolumes>
  Attach(const Sandbox &sandbox, AgentClient &agent,
         const std::string &container_id,
         const ContainerConfig &config) override;
  void Detach(const Sandbox &sandbox, AgentClient *agent,
              const std::string &container_id,
              const ContainerVolumes &volumes) override;
};

} // namespace podvisor
