#pragma once

// What an operator asks about the pod VMs of this daemon: one row per sandbox with its VM's
// process and memory as the host sees them. Shared by the metrics collector and the admin
// socket. Read-only; thread-safe (it only calls public, thread-safe controller methods).

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json_fwd.hpp"
#include "pod-sandbox/sandbox_controller.h"

namespace podvisor::cri {

struct VmRow {
  std::string id;
  std::string name;  // pod namespace/name
  std::string state;  // ready | notready
  std::string handler;  // the CRI runtime handler; this backend is "vm"
  pid_t qemu_pid = 0;  // 0 when the VM is not running
  std::string accelerator;
  uint32_t vcpus = 0;
  uint64_t memory_mib = 0;
  uint64_t rss_bytes = 0;  // 0 when the process cannot be read
  uint64_t pss_bytes = 0;
  int64_t boot_ms = 0;
  int64_t created_at_ns = 0;
  // connected | lost (a READY sandbox whose channel is gone) | none (not ready)
  std::string agent;
  std::string console_log;  // the guest's serial console, on the host
};

// Every sandbox, oldest first. With `with_memory`, reads /proc of each QEMU (RSS and PSS).
std::vector<VmRow> ListVms(SandboxController& sandboxes, bool with_memory);

// The one sandbox whose id is `id` or starts with it: NOT_FOUND, or INVALID_ARGUMENT naming the
// candidates when the prefix is ambiguous.
absl::StatusOr<VmRow> FindVm(SandboxController& sandboxes, absl::string_view id_or_prefix);

// Pss of /proc/<pid>/smaps_rollup. NOT_FOUND when the process is gone.
absl::StatusOr<uint64_t> ReadPssBytes(pid_t pid);
// The same from the text of smaps_rollup (for tests).
absl::StatusOr<uint64_t> ParsePssBytes(absl::string_view smaps_rollup);

nlohmann::json VmRowToJson(const VmRow& row);

}  // namespace podvisor::cri
