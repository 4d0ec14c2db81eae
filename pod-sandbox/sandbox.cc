#include "pod-sandbox/sandbox.h"

#include <sys/random.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

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

std::string NewObjectId() {
  unsigned char bytes[32];
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  static const char kHex[] = "0123456789abcdef";
  std::string id;
  for (unsigned char b : bytes) {
    id += kHex[b >> 4];
    id += kHex[b & 15];
  }
  return id;
}

}  // namespace podvisor
