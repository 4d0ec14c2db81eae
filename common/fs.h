#pragma once

#include <string>

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

// Removes `path` and everything under it; a missing path is not an error.
absl::Status RemoveAll(const std::string& path);

// The directory holding the running executable.
std::string ExecutableDir();

// An absl::Status for a failed system call, with errno's text: "what: strerror".
absl::Status ErrnoStatus(absl::string_view what, int err);

}  // namespace podvisor
