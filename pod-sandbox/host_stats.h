#pragma once

// What a pod VM costs the node, read on the host: the QEMU process's CPU time and memory
// (/proc/<pid>/stat and status) and the traffic of the pod's interfaces in its network namespace
// (/proc/thread-self/net/dev from a thread that joined the netns). Stateless; thread-safe.

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace podvisor {

struct ProcessCost {
  uint64_t cpu_ns = 0;      // user + system time of every thread
  uint64_t rss_bytes = 0;   // VmRSS: resident memory, guest RAM touched included
  uint64_t anon_bytes = 0;  // RssAnon
  uint64_t shmem_bytes = 0;  // RssShmem: guest RAM when it is a shared memfd (virtiofs)
  uint64_t minor_faults = 0;
  uint64_t major_faults = 0;
};

// NOT_FOUND when the process is gone.
absl::StatusOr<ProcessCost> ReadProcessCost(pid_t pid);
// The same from the text of /proc/<pid>/stat and /proc/<pid>/status (for tests).
absl::StatusOr<ProcessCost> ParseProcessCost(absl::string_view stat, absl::string_view status,
                                             int64_t clock_ticks_per_second);

struct InterfaceUsage {
  std::string name;
  uint64_t rx_bytes = 0;
  uint64_t rx_errors = 0;
  uint64_t tx_bytes = 0;
  uint64_t tx_errors = 0;
};

// The interfaces of a /proc/net/dev text, loopback left out.
std::vector<InterfaceUsage> ParseNetDev(absl::string_view text);
// The interfaces of the network namespace bind-mounted at `netns_path`.
absl::StatusOr<std::vector<InterfaceUsage>> ReadNetnsInterfaces(const std::string& netns_path);

}  // namespace podvisor
