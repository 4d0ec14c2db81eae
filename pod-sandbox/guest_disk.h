#pragma once

// The read-only disks hot-plugged into a pod VM (image layers, volume snapshots): the SCSI
// targets they take and their mount in the guest.

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pod-sandbox/agent_client.h"

namespace podvisor {

// The SCSI targets of each pod VM's hot-plugged disks. A slot is taken by Acquire and given back
// by Release once its disk is gone from the VM; a disk that could not be detached keeps its slot.
// Slots rotate through the free ones, so that a target just unplugged (which the guest may still
// be tearing down) is not the next one used. Thread-safe.
class DiskSlots {
 public:
  static constexpr uint32_t kFirst = 1;
  static constexpr uint32_t kLast = 254;

  // RESOURCE_EXHAUSTED when every slot of the sandbox's VM is taken.
  absl::StatusOr<uint32_t> Acquire(const std::string& sandbox_id);
  // Marks a slot taken that a disk attached before a daemon restart holds.
  void Reserve(const std::string& sandbox_id, uint32_t slot);
  void Release(const std::string& sandbox_id, uint32_t slot);
  // The sandbox's VM is gone, and its disks with it.
  void Forget(const std::string& sandbox_id);

 private:
  struct Pod {
    std::set<uint32_t> used;
    uint32_t cursor = 0;  // offset from kFirst of the next slot to try
  };
  mutable absl::Mutex mu_;
  std::map<std::string, Pod> pods_ ABSL_GUARDED_BY(mu_);
};

// Asks the agent to mount a read-only erofs disk just hot-plugged. The guest may list the disk
// (its serial in sysfs) a moment before the block device can be opened (mount: ENXIO), so a
// failure is retried for a few seconds; a mount that failed left nothing behind.
absl::StatusOr<std::string> MountDisk(AgentClient& agent, const std::string& serial,
                                      const std::string& mount_point, absl::Duration timeout);

}  // namespace podvisor
