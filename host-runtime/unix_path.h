#pragma once

// Unix sockets named by a directory and a file name, whatever the directory's length: the path
// goes through /proc/self/fd/<dirfd>/<name>, which always fits sockaddr_un.

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace podvisor::host {

// A listening socket (mode 0600, close-on-exec, non-blocking) at <dir>/<name>, replacing a
// stale one.
absl::StatusOr<int> ListenUnix(const std::string& dir, const std::string& name);
// A connected socket (close-on-exec, blocking) to <dir>/<name>, with send/receive timeouts.
absl::StatusOr<int> ConnectUnix(const std::string& dir, const std::string& name,
                                absl::Duration timeout);

}  // namespace podvisor::host
