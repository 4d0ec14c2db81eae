#pragma once

#include <vector>

#include "pod-sandbox/sandbox.h"

namespace podvisor {

// Owns the life of pod sandboxes: their durable records, their VMs and their networks.
// Thread-safe.
class SandboxController {
 public:
  explicit SandboxController(SandboxStore* sandboxes) : sandboxes_(sandboxes) {}

  std::vector<Sandbox> List(const SandboxFilter& filter) const;

 private:
  SandboxStore* const sandboxes_;
};

}  // namespace podvisor
