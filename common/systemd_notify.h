#pragma once

// The sd_notify(3) datagram protocol, without libsystemd: a service of Type=notify tells systemd
// "READY=1" once it serves, "RELOADING=1" around a reload, "STOPPING=1" when it shuts down.

#include <string_view>

#include "absl/status/status.h"

namespace podvisor {

// Sends `state` (newline-separated KEY=VALUE pairs) to the socket named by $NOTIFY_SOCKET (a path,
// or "@name" for the abstract namespace). OK and nothing sent when the variable is unset, as when
// the daemon does not run under systemd.
absl::Status NotifySystemd(std::string_view state);

}  // namespace podvisor
