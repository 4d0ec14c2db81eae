#pragma once

// A container's image layers as read-only erofs disks of its pod VM, shared by the pod's
// containers: a layer is attached once per VM and detached when no container uses it.

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hypervisor/hypervisor.h"
#include "pod-sandbox/agent_client.h"
#include "pod-sandbox/container.h"
#include "pod-sandbox/guest_disk.h"

namespace podvisor {

// Thread-safe as far as DiskSlots is; the caller serialises the operations on one sandbox.
class LayerDisks {
 public:
  LayerDisks(Hypervisor* hypervisor, DiskSlots* slots, absl::Duration agent_call_timeout)
      : hypervisor_(hypervisor), slots_(slots), agent_call_timeout_(agent_call_timeout) {}

  // The disks of `paths` (lowest first), attached and mounted in the guest at
  // kLayerMountDir<serial>. `attached`: the layers the sandbox's VM has already, by layer image
  // path. On failure, the disks this call attached are gone again.
  absl::StatusOr<std::vector<LayerDisk>> Attach(const std::string& sandbox_id, AgentClient& agent,
                                                const std::vector<std::string>& paths,
                                                const std::map<std::string, LayerDisk>& attached);
  // Detaches each of `layers` whose serial is not in `still_used`. `agent` null: the VM is gone
  // or going, and its disks with it.
  void Detach(const std::string& sandbox_id, AgentClient* agent,
              const std::vector<LayerDisk>& layers, const std::set<std::string>& still_used);

 private:
  // Unmounts and unplugs one disk; its slot is free again when both worked.
  absl::Status DetachOne(const std::string& sandbox_id, AgentClient& agent, const LayerDisk& d);

  Hypervisor* const hypervisor_;
  DiskSlots* const slots_;
  const absl::Duration agent_call_timeout_;
};

// The serial of a new layer disk: 13 hex digits of the layer image's name (its diff id) and 6
// random ones, [a-z0-9], 20 characters.
std::string LayerSerial(const std::string& path);

}  // namespace podvisor
