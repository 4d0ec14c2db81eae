#include "cri/config_reload.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace podvisor::cri {
namespace {

void Diff(const nlohmann::json& a, const nlohmann::json& b, const std::string& prefix,
          std::vector<std::string>& out) {
  if (a.is_object() && b.is_object()) {
    for (const auto& [key, value] : a.items()) {
      const std::string k = prefix.empty() ? key : absl::StrCat(prefix, ".", key);
      Diff(value, b.contains(key) ? b.at(key) : nlohmann::json(), k, out);
    }
    for (const auto& [key, value] : b.items()) {
      if (a.contains(key)) continue;
      Diff(nlohmann::json(), value, prefix.empty() ? key : absl::StrCat(prefix, ".", key), out);
    }
    return;
  }
  if (a != b) out.push_back(prefix);
}

}  // namespace

bool IsLiveKey(const std::string& key) {
  return key == "log_level" || key == "metrics.address" || key == "registry.hosts" ||
         absl::StartsWith(key, "registry.hosts.");
}

std::vector<std::string> ChangedKeys(const Config& a, const Config& b) {
  std::vector<std::string> out;
  Diff(ConfigToJson(a), ConfigToJson(b), "", out);
  std::sort(out.begin(), out.end());
  return out;
}

Config ApplyLiveKeys(const Config& running, const Config& next) {
  Config c = running;
  c.log_level = next.log_level;
  c.registry.hosts = next.registry.hosts;
  c.metrics.address = next.metrics.address;
  return c;
}

}  // namespace podvisor::cri
