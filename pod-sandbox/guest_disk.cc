#include "pod-sandbox/guest_disk.h"

#include <algorithm>

#include "common/log.h"

namespace podvisor {

absl::StatusOr<uint32_t> DiskSlots::Acquire(const std::string& sandbox_id) {
  absl::MutexLock lock(&mu_);
  Pod& pod = pods_[sandbox_id];
  const uint32_t slots = kLast - kFirst + 1;
  for (uint32_t i = 0; i < slots; ++i) {
    const uint32_t candidate = kFirst + (pod.cursor + i) % slots;
    if (pod.used.contains(candidate)) continue;
    pod.used.insert(candidate);
    pod.cursor = candidate - kFirst + 1;
    return candidate;
  }
  return absl::ResourceExhaustedError("the pod VM has no free disk slot");
}

void DiskSlots::Reserve(const std::string& sandbox_id, uint32_t slot) {
  absl::MutexLock lock(&mu_);
  pods_[sandbox_id].used.insert(slot);
}

void DiskSlots::Release(const std::string& sandbox_id, uint32_t slot) {
  absl::MutexLock lock(&mu_);
  auto it = pods_.find(sandbox_id);
  if (it != pods_.end()) it->second.used.erase(slot);
}

void DiskSlots::Forget(const std::string& sandbox_id) {
  absl::MutexLock lock(&mu_);
  pods_.erase(sandbox_id);
}

absl::StatusOr<std::string> MountDisk(AgentClient& agent, const std::string& serial,
                                      const std::string& mount_point, absl::Duration timeout) {
  absl::StatusOr<std::string> device;
  absl::Duration backoff = absl::Milliseconds(100);
  for (int attempt = 0; attempt < 6; ++attempt) {
    device = agent.DiskAttached(serial, mount_point, "erofs", true, timeout);
    // Not found: the agent already waited for the disk (10 s); unavailable: the channel is gone.
    if (device.ok() || absl::IsInvalidArgument(device.status()) ||
        absl::IsUnavailable(device.status()) || absl::IsNotFound(device.status()) ||
        absl::IsDeadlineExceeded(device.status())) {
      return device;
    }
    PV_LOG(kDebug) << "disk " << serial << " not mountable yet: " << device.status();
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(1));
  }
  return device;
}

}  // namespace podvisor
