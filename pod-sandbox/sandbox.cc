#include "pod-sandbox/sandbox.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/random.h"

namespace podvisor {

bool SandboxMatches(const Sandbox& sandbox, const SandboxFilter& filter) {
  if (!filter.id_prefix.empty() && !absl::StartsWith(sandbox.metadata.id, filter.id_prefix)) {
    return false;
  }
  if (filter.state && sandbox.status.state != *filter.state) return false;
  for (const auto& [key, value] : filter.label_selector) {
    auto it = sandbox.metadata.labels.find(key);
    if (it == sandbox.metadata.labels.end() || it->second != value) return false;
  }
  return true;
}

std::string SandboxName(const std::string& name, const std::string& ns, const std::string& uid,
                        uint32_t attempt) {
  return absl::StrCat(name, "_", ns, "_", uid, "_", attempt);
}

}  // namespace podvisor

namespace podvisor {

std::string NewObjectId() { return RandomHex(32); }

}  // namespace podvisor
