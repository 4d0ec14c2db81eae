#include "pod-sandbox/container.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace podvisor {

bool ContainerMatches(const Container& container, const ContainerFilter& filter) {
  if (!filter.id_prefix.empty() && !absl::StartsWith(container.metadata.id, filter.id_prefix)) {
    return false;
  }
  if (filter.state && container.status.state != *filter.state) return false;
  if (!filter.sandbox_id_prefix.empty() &&
      !absl::StartsWith(container.metadata.sandbox_id, filter.sandbox_id_prefix)) {
    return false;
  }
  for (const auto& [key, value] : filter.label_selector) {
    auto it = container.metadata.config.labels.find(key);
    if (it == container.metadata.config.labels.end() || it->second != value) return false;
  }
  return true;
}

std::string ContainerName(const std::string& name, const std::string& pod_name,
                          const std::string& pod_namespace, const std::string& pod_uid,
                          uint32_t attempt) {
  return absl::StrCat(name, "_", pod_name, "_", pod_namespace, "_", pod_uid, "_", attempt);
}

}  // namespace podvisor
