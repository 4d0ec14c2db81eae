#pragma once

// The ownership of a container's root filesystem in a user namespace. The guest kernel (6.1)
// cannot idmap erofs, tmpfs or overlayfs mounts, so the agent shifts the rootfs itself: every
// entry of the merged overlay is chowned from its image id to the guest id that id maps to. On
// an overlay mounted with metacopy=on that copies up metadata only, never file data.

#include <cstdint>
#include <string>

#include "agent/result.h"

namespace podvisor::agent {

// One id range: container ids [container_id, container_id + size) are guest ids
// [host_id, host_id + size).
struct IdRange {
  uint32_t container_id = 0;
  uint32_t host_id = 0;
  uint32_t size = 0;
};

// The guest id of container id `id`; `id` itself when the range does not map it (an image id
// outside the range stays as it is, which the container sees as the overflow id "nobody").
uint32_t MapId(const IdRange& range, uint32_t id);

// Chowns every entry under `root` (itself included, symlinks as links, never crossing into
// another mount) from its current uid/gid to the mapped one, each inode once (hard links), and
// restores what chown clears: the setuid/setgid bits and the security.capability xattr. All
// entries are read before the first is changed, so no id is shifted twice. `entries` (optional)
// gets how many were changed.
Error ShiftOwnership(const std::string& root, const IdRange& uids, const IdRange& gids,
                     uint64_t* entries = nullptr);

}  // namespace podvisor::agent
