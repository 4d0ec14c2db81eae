#include "pod-sandbox/sandbox_controller.h"

namespace podvisor {

std::vector<Sandbox> SandboxController::List(const SandboxFilter& filter) const {
  std::vector<Sandbox> out;
  for (Sandbox& s : sandboxes_->List()) {
    if (SandboxMatches(s, filter)) out.push_back(std::move(s));
  }
  return out;
}

}  // namespace podvisor
