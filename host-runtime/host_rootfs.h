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

// A recursively read-only copy of the host tree at `host_path` for a container's mount
// (CRI recursive_read_only): a private clone of its mount tree (open_tree with AT_RECURSIVE),
// read-only at every depth (mount_setattr AT_RECURSIVE), attached at <dir>/rro/<index>, which is
// returned. crun's rbind of it keeps each mount's flags, so no depth is writable in the
// container; mounts made later under `host_path` do not reach it (private). Once crun has
// bound it, DetachRecursiveReadOnly takes it out of the node's mount namespace; UnmountRootfs
// detaches whatever of it is left with the rest.
absl::StatusOr<std::string> StageRecursiveReadOnly(const std::string& dir, size_t index,
                                                   const std::string& host_path);

// Detaches every copy StageRecursiveReadOnly attached under `dir`, with its submounts. The
// container keeps its own (crun made it in the container's mount namespace); left attached, the
// copies would make each submount's directory under the host path a mount point in the node's
// namespace, so it could not be removed (EBUSY) while the container lives. Idempotent.
absl::Status DetachRecursiveReadOnly(const std::string& dir);

// Unmounts what MountRootfs and StageRecursiveReadOnly mounted under `dir` (whatever of it is
// still there). Idempotent.
absl::Status UnmountRootfs(const std::string& dir);

// Mounts one erofs image read-only at `target` (nodev, nosuid kept off: images may carry
// setuid binaries, as in any container runtime).
absl::Status MountErofs(const std::string& image, const std::string& target);

}  // namespace podvisor::host
