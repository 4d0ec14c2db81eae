// The host cgroup of a pod VM: `<cgroup_parent>/podvisor-<sandbox id>` under each controller
// kubelet's QoS and eviction look at (cgroupfs layout; v1 memory, cpu, pids, or the v2 unified
// hierarchy), holding the VM's QEMU and virtiofsd, with the pod's limits: memory = VM memory plus
// what QEMU itself needs, CPU quota from the pod's resources. See docs/hypervisor.md, "Host
// cgroups".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace podvisor {

// What QEMU (code buffer, device emulation, its own heap) and virtiofsd need beyond guest RAM.
inline constexpr uint64_t kVmmOverheadMib = 256;

// Refuses a cgroup_parent that is not a clean absolute cgroupfs path: "..", ".", empty components,
// characters other than [A-Za-z0-9._-], more than 512 bytes. An empty parent is valid (no cgroup).
absl::Status ValidateCgroupParent(const std::string& parent);

struct VmCgroupLimits {
  uint64_t memory_bytes = 0;  // 0: no memory limit
  int64_t cpu_quota_us = 0;   // with cpu_period_us; 0: no quota
  int64_t cpu_period_us = 0;
};

// The directories of cgroup `rel` (absolute, "/a/b") under `root`: one per v1 controller
// kubelet looks at (memory, cpu, cpuacct, pids) that is mounted, or the v2 one.
std::vector<std::string> CgroupDirs(const std::string& root, const std::string& rel);
// Writes the memory limit and CPU quota that `limits` sets (0: left as it is) to existing cgroup
// directories `dirs` of CgroupDirs(root, ...).
absl::Status WriteCgroupLimits(const std::string& root, const std::vector<std::string>& dirs,
                               const VmCgroupLimits& limits);

class VmCgroup {
 public:
  // `root` is where the cgroup filesystems are mounted (/sys/fs/cgroup; tests use a directory
  // shaped like it): v1 when it has a `memory` controller directory, v2 when it has
  // cgroup.controllers. `parent` must have passed ValidateCgroupParent and be non-empty.
  VmCgroup(std::string root, std::string parent, std::string sandbox_id);

  // Creates the cgroup under every controller (and missing parents) and writes the limits.
  // Undoes what it made when a step fails.
  absl::Status Create(const VmCgroupLimits& limits);
  // Changes the limits of the existing cgroup (UpdatePodSandboxResources); what `limits` leaves
  // 0 stays. NOT_FOUND when the cgroup is gone.
  absl::Status Update(const VmCgroupLimits& limits) const;
  // The directories a VM process must join (one per v1 controller, or the v2 one).
  std::vector<std::string> Dirs() const;
  // Removes the cgroup of every controller; one that is absent already is no error. Fails
  // (FAILED_PRECONDITION) while processes remain in it.
  absl::Status Remove() const;

 private:
  bool IsV2() const;
  std::string root_;
  std::string parent_;
  std::string name_;
};

}  // namespace podvisor
