#pragma once

// The admin socket podvisorctl talks to: a unix socket (mode 0600, root only) under the state
// directory. One request per connection: a JSON object on one line, answered by one JSON object
// {"ok": true, "result": ...} or {"ok": false, "error": "..."}; then the server closes.
//
// Commands: {"command": "vms"}, {"command": "vm", "pod": ID}, {"command": "config"},
// {"command": "agent", "pod": ID, "action": "ping" | "stats" | "ps"}, {"command": "templates"}. Pod ids may be unique
// prefixes. docs/podvisorctl.md describes the answers.

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"
#include "pod-sandbox/container_controller.h"
#include "pod-sandbox/sandbox_controller.h"

namespace podvisor::cri {

struct AdminContext {
  SandboxController* sandboxes = nullptr;
  ContainerController* containers = nullptr;
  // The effective configuration (after reloads), as Status verbose shows it.
  std::function<nlohmann::json()> effective_config;
  VmTemplateStore* templates = nullptr;  // nullptr: templates off
};

// Answers one request (the JSON text of one line). Never fails: errors are in the answer.
std::string HandleAdminRequest(const AdminContext& context, const std::string& request);

class AdminServer {
 public:
  // Listens on `socket_path` (a stale socket is replaced; the parent directory must exist).
  static absl::StatusOr<std::unique_ptr<AdminServer>> Start(const std::string& socket_path,
                                                            AdminContext context);
  virtual ~AdminServer() = default;  // stops serving and removes the socket
};

}  // namespace podvisor::cri
