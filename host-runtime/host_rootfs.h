#pragma once

// A host container's root filesystem from the image store's erofs layer images
// (docs/images.md): each layer mounted read-only (file-backed erofs, or a read-only loop device
// where the kernel cannot mount a file), stacked by an overlay with a writable upper on the host.

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace podvisor::host {

// Under `dir`: layers/<n> (n = 0 for the lowest), upper/, work/ and the overlay at rootfs/.
// Returns the rootfs path. Undoes its mounts on failure.
absl::StatusOr<std::string> MountRootfs(const std::string& dir,
                                        const std::vector<std::string>& layer_images);

// Unmounts what MountRootfs mounted under `dir` (whatever of it is still there). Idempotent.
absl::Status UnmountRootfs(const std::string& dir);

// Mounts one erofs image read-only at `target` (nodev, nosuid kept off: images may carry
// setuid binaries, as in any container runtime).
absl::Status MountErofs(const std::string& image, const std::string& target);

}  // namespace podvisor::host
