#pragma once

#include <cstdint>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace podvisor {

// A container's seccomp choice, from the CRI SecurityProfile (or the deprecated profile path).
struct SeccompConfig {
  enum class Kind { kUnconfined, kRuntimeDefault, kLocalhost };
  Kind kind = Kind::kUnconfined;
  std::string localhost_path;  // absolute host path of the profile (kLocalhost)
};
NLOHMANN_JSON_SERIALIZE_ENUM(SeccompConfig::Kind,
                             {{SeccompConfig::Kind::kUnconfined, "unconfined"},
                              {SeccompConfig::Kind::kRuntimeDefault, "runtime/default"},
                              {SeccompConfig::Kind::kLocalhost, "localhost"}})
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(SeccompConfig, kind, localhost_path)

// The OCI runtime-spec `linux.seccomp` object (as JSON text) for a non-privileged container with
// the capabilities `caps` ("CAP_SYS_ADMIN", ...); "" for unconfined.
//
// RuntimeDefault is the runtime's own profile: every syscall allowed except the ones that reach
// outside a container (kernel modules and kexec, keyrings, mount and namespace changes, the
// clocks, reboot and swap, bpf and perf, ptrace and cross-process memory access, quotas, handle
// based opens, NUMA policy, userfaultfd, ...), which fail with EPERM unless the container holds
// the capability that legitimately grants them (CAP_SYS_ADMIN for mount, CAP_SYS_TIME for the
// clocks, ...). A deny-list is a deliberate choice: the pod VM is the isolation boundary, so the
// profile is in-guest hygiene, and programs that use a syscall newer than the list keep working.
//
// Localhost reads the JSON profile at `localhost_path` (absolute), in the OCI format or the
// Docker/containerd one (`names` or `name`, `archMap`, `includes`/`excludes` on capabilities and
// architectures are evaluated for x86_64 and `caps`), and returns it in the OCI format.
//
// A localhost profile larger than the limit (config key seccomp_profile_max_bytes, 1 MiB by
// default) or that is not a regular file is refused (INVALID_ARGUMENT) without reading past
// the limit.
absl::StatusOr<std::string> SeccompProfileJson(const SeccompConfig& config,
                                               const std::set<std::string>& caps);

// Sets the localhost profile size limit (from the daemon's configuration, at start).
void SetSeccompProfileMaxBytes(int64_t max_bytes);
int64_t SeccompProfileMaxBytes();

}  // namespace podvisor
