#pragma once

#include <cstdint>
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

// Creates `path` and its missing parents, each with `mode` exactly (whatever the umask); a
// directory that already exists keeps its mode and owner (a log directory of mode 1777 keeps
// its sticky bit). FAILED_PRECONDITION when a component exists and is not a directory.
absl::Status EnsureDirs(const std::string& path, unsigned mode = 0755);

// Reads a regular file of at most `max_bytes` (OUT_OF_RANGE naming the limit when larger, and
// never reading more than the limit; FAILED_PRECONDITION for a device, FIFO or directory).
absl::StatusOr<std::string> ReadFileLimited(const std::string& path, int64_t max_bytes);

// True when `path` has a ".." component.
bool HasDotDot(absl::string_view path);

// fsync of a directory, so that renames and creations inside it are durable.
absl::Status FsyncDir(const std::string& dir);

// Removes `path` and everything under it; a missing path is not an error. The directories above
// the last component are trusted; at and below it nothing is followed or resolved by name
// (RemoveTreeAt, common/safe_path.h): a symlink is removed, never followed, and whatever is
// mounted at or under `path` (e.g. a bind mount of a user's host directory) is detached before
// anything below it is touched, so nothing is ever deleted through a mount. If a detach fails,
// the error is returned and the mount and what is below it stay.
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
