#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace podvisor {

// Creates `path` and its missing parents with `mode`.
absl::Status MakeDirs(const std::string& path, unsigned mode = 0755);

// Writes `data` to `path` atomically and durably: a temp file in the same directory, fsync,
// rename over `path`, fsync of the directory. A crash leaves either the old or the new file.
absl::Status WriteFileAtomic(const std::string& path, absl::string_view data, unsigned mode = 0644);

absl::StatusOr<std::string> ReadFile(const std::string& path);

// fsync of a directory, so that renames and creations inside it are durable.
absl::Status FsyncDir(const std::string& dir);

// Removes `path` and everything under it; a missing path is not an error. Whatever is mounted at
// or under `path` (e.g. a bind mount of a user's host directory) is unmounted first, so nothing is
// ever deleted through a mount; if an unmount fails, nothing is removed.
absl::Status RemoveAll(const std::string& path);

// The mount points of this process's mount namespace at or under `path` (canonical absolute
// paths, from /proc/self/mountinfo), deepest last.
absl::StatusOr<std::vector<std::string>> MountPointsUnder(const std::string& path);

// Detaches (MNT_DETACH) every mount at or under `path`, deepest first.
absl::Status UnmountAllUnder(const std::string& path);

// The directory holding the running executable.
std::string ExecutableDir();

// An absl::Status for a failed system call, with errno's text: "what: strerror".
absl::Status ErrnoStatus(absl::string_view what, int err);

}  // namespace podvisor
