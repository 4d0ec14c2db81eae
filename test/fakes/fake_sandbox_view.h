#pragma once

// A SandboxView for unit tests of the container side: sandboxes are records in the given store,
// their agents and host stats are what the test sets, and the hooks are kept for the test to fire.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "pod-sandbox/sandbox_view.h"

namespace podvisor::testing {

class FakeSandboxView : public SandboxView {
 public:
  explicit FakeSandboxView(SandboxStore* sandboxes) : sandboxes_(sandboxes) {}

  std::map<std::string, std::shared_ptr<AgentClient>> agents;
  std::map<std::string, VmHostStats> host_stats;
  SandboxHooks hooks;

  absl::StatusOr<std::shared_ptr<AgentClient>> Agent(const std::string& id) override {
    auto it = agents.find(id);
    if (it == agents.end()) {
      return absl::FailedPreconditionError(absl::StrCat("sandbox ", id, " is not ready"));
    }
    return it->second;
  }
  absl::StatusOr<VmHostStats> HostStats(const std::string& id) override {
    auto it = host_stats.find(id);
    if (it == host_stats.end()) {
      return absl::FailedPreconditionError(absl::StrCat("sandbox ", id, " is not ready"));
    }
    return it->second;
  }
  std::vector<Sandbox> List(const SandboxFilter& filter) const override {
    std::vector<Sandbox> out;
    for (Sandbox& s : sandboxes_->List()) {
      if (SandboxMatches(s, filter)) out.push_back(std::move(s));
    }
    return out;
  }
  void SetHooks(SandboxHooks h) override { hooks = std::move(h); }

 private:
  SandboxStore* const sandboxes_;
};

}  // namespace podvisor::testing
