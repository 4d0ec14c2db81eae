#pragma once

#include "pod-sandbox/volume_share.h"

namespace podvisor {

// Volumes through the sandbox's shared directory: each host path is bind-mounted on the host at
// <shared_dir>/<container id>/<n>, which the guest sees at kGuestSharedDir/<container id>/<n> and
// crun binds at the container path. Live both ways. Guest root can write the shared directory,
// so the host binds are where read-only (top mount, or every depth for recursive_read_only),
// nosuid and nodev (every depth) are enforced, and every host operation in the directory is
// relative to a descriptor with no symlink followed (common/safe_path.h). Only the host side is
// built here; how the VM reaches the directory (its filesystem device and the guest's
// filesystem type) is the sandbox's. Stateless and thread-safe.
class SharedDirectoryVolumes : public VolumeShare {
 public:
  // `empty_dir_max_bytes` > 0: a kubelet emptyDir gets a tmpfs of that size on its host
  // directory (a guest that fills it gets ENOSPC).
  explicit SharedDirectoryVolumes(uint64_t empty_dir_max_bytes = 0)
      : empty_dir_max_bytes_(empty_dir_max_bytes) {}

  absl::StatusOr<ContainerVolumes> Attach(const Sandbox& sandbox, AgentClient& agent,
                                          const std::string& container_id,
                                          const ContainerConfig& config) override;
  void Detach(const Sandbox& sandbox, AgentClient* agent, const std::string& container_id,
              const ContainerVolumes& volumes) override;

 private:
  const uint64_t empty_dir_max_bytes_;
};

// Makes the (empty) directory `dir` a tmpfs of `max_bytes`, nosuid, nodev, noexec: what a guest
// writes into the shared directory itself is bounded and never reaches the host's disk. The
// volumes are separate mounts below it. Removed with the directory (RemoveAll detaches it).
absl::Status MountSharedDirectory(const std::string& dir, uint64_t max_bytes);

}  // namespace podvisor
