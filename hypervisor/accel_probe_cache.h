// The outcome of the KVM probe boot (does a guest reach its init under accel=kvm?), kept on disk
// so that a daemon restart does not boot the probe again. The outcome holds as long as what it
// depends on is unchanged: the host kernel, the QEMU binary, the libvirt library and the guest
// image the probe booted. The cache is keyed by all four; any change makes a miss and a new probe.
// See docs/hypervisor.md, "Acceleration".
#pragma once

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace podvisor {

struct AccelProbeInputs {
  std::string emulator;         // QEMU binary
  std::string kernel;           // guest kernel the probe boots
  std::string initrd;           // guest initrd the probe boots
  unsigned long libvirt_version = 0;  // virGetVersion(): major * 1e6 + minor * 1e3 + release
};

// The cache key of `inputs`: one "name=value" line per input, each file named by its path, size,
// modification time and inode (a package upgrade or an image rebuild changes them), the kernel by
// its release and version strings. Fails if a file cannot be examined.
absl::StatusOr<std::string> AccelProbeKey(const AccelProbeInputs& inputs);

// The probe outcome cached at `path` for `key`: whether KVM booted the guest. nullopt when there
// is no cache file, it is unreadable, or it was written for another key.
std::optional<bool> LoadAccelProbe(const std::string& path, const std::string& key);

// Records the outcome for `key` at `path` (written to a temporary file, then renamed).
absl::Status StoreAccelProbe(const std::string& path, const std::string& key, bool kvm_boots);

}  // namespace podvisor
