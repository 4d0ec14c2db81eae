#pragma once

#include "absl/time/time.h"
#include "hypervisor/hypervisor.h"
#include "pod-sandbox/guest_disk.h"
#include "pod-sandbox/volume_share.h"

namespace podvisor {

// Volumes of a pod VM that shares no filesystem with the host: each read-only host directory
// (or file) is packed into an erofs image in the sandbox's state directory, hot-plugged as a
// read-only disk and mounted in the guest at kVolumeMountDir<serial>. A snapshot: what the host
// writes later is not seen. Writable host mounts are refused by the spec (BuildContainerSpec).
// Thread-safe as far as DiskSlots is; the caller serialises the operations on one sandbox.
class SnapshotVolumes : public VolumeShare {
 public:
  SnapshotVolumes(Hypervisor* hypervisor, DiskSlots* slots, absl::Duration agent_call_timeout)
      : hypervisor_(hypervisor), slots_(slots), agent_call_timeout_(agent_call_timeout) {}

  absl::StatusOr<ContainerVolumes> Attach(const Sandbox& sandbox, AgentClient& agent,
                                          const std::string& container_id,
                                          const ContainerConfig& config) override;
  void Detach(const Sandbox& sandbox, AgentClient* agent, const std::string& container_id,
              const ContainerVolumes& volumes) override;

 private:
  Hypervisor* const hypervisor_;
  DiskSlots* const slots_;
  const absl::Duration agent_call_timeout_;
};

}  // namespace podvisor
