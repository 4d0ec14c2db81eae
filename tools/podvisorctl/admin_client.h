#pragma once

// The client side of podvisord's admin socket (cri/admin_server.h): one JSON request, one answer.

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace podvisor::ctl {

// Sends `request` to the admin socket at `socket_path` and returns the answer's "result", or the
// daemon's error (with its status code) or why the socket could not be used.
absl::StatusOr<nlohmann::json> AdminCall(const std::string& socket_path,
                                         const nlohmann::json& request);

}  // namespace podvisor::ctl
