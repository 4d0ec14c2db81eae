#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"

namespace podvisor::network {

// Creates a new network namespace and bind-mounts it at `path` (the file is created; its
// directory must exist). The namespace then lives until RemoveNetns, independent of any process,
// so it survives a daemon restart. ALREADY_EXISTS if `path` exists.
absl::Status CreateNetns(const std::string& path);

// Unmounts and deletes a namespace made by CreateNetns. A missing path is not an error.
absl::Status RemoveNetns(const std::string& path);

// True when `path` is a mounted network namespace.
bool IsNetns(const std::string& path);

// Runs `fn` on a fresh thread that has joined the network namespace at `path`, and waits for it.
// Sockets and tap devices made by `fn` belong to that namespace; the caller's thread is never
// moved, so this is safe in a multithreaded daemon.
absl::Status RunInNetns(const std::string& path, const std::function<absl::Status()>& fn);

}  // namespace podvisor::network
