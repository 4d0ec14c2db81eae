#pragma once

// Image volumes (CRI Mount.image): an image's layers, each already a read-only mount, stacked into
// one read-only tree, and the part of it a container asked for. The guest agent mounts them over
// the layer disks, the host handler over the layers' erofs images on the host.

#include <string>
#include <vector>

#include "agent/result.h"

namespace podvisor::agent {

// At most this many layers in one image volume (overlayfs takes its lower directories as one
// mount option of at most a page).
inline constexpr size_t kMaxImageVolumeLayers = 128;

// Mounts under `dir` (created, 0700): `lower_dirs` (top first) as one read-only overlay (one
// layer: a read-only bind of it), nosuid and nodev; with `sub_path`, the directory or regular
// file it names inside that tree (symlinks resolved as if the tree were the root, so never out of
// it) bound read-only on its own. `*source` is what to bind into the container. Every mount made
// is appended to `*mounts`, outermost first (unmount them last to first); on error those already
// made are appended too.
Error MountImageVolume(const std::vector<std::string>& lower_dirs, const std::string& sub_path,
                       const std::string& dir, std::vector<std::string>* mounts,
                       std::string* source);

// INVALID_ARGUMENT unless `sub_path` is empty or relative with no ".." component.
Error ValidateImageSubPath(const std::string& sub_path);

}  // namespace podvisor::agent
