#include "pod-sandbox/container.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace podvisor {

std::vector<LayerDisk> HeldLayers(const ContainerMetadata& meta) {
  std::vector<LayerDisk> held = meta.layers;
  for (const ImageVolumeRecord& v : meta.image_volumes) {
    for (const LayerDisk& d : v.layers) {
      // A layer the rootfs or another volume has too is one disk.
      const bool known = std::any_of(held.begin(), held.end(),
                                     [&](const LayerDisk& h) { return h.serial == d.serial; });
      if (!known) held.push_back(d);
    }
  }
  return held;
}

bool UsesImage(const ContainerMetadata& meta, const std::string& image_id) {
  if (meta.image_id == image_id) return true;
  return std::any_of(meta.image_volumes.begin(), meta.image_volumes.end(),
                     [&](const ImageVolumeRecord& v) { return v.image_id == image_id; });
}

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

namespace {

constexpr int64_t kMinMemoryLimit = 4 << 20;

// "0-3,5" (cpuset lists).
bool IsCpuList(const std::string& s) {
  if (s.size() > 1024) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c)) && c != ',' && c != '-') return false;
  }
  return true;
}

// "2MB", "1GB", "64KB".
bool IsPageSize(const std::string& s) {
  size_t digits = 0;
  while (digits < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[digits]))) {
    ++digits;
  }
  const std::string unit = s.substr(digits);
  return digits > 0 && digits <= 6 && (unit == "KB" || unit == "MB" || unit == "GB");
}

absl::Status Invalid(absl::string_view what) { return absl::InvalidArgumentError(what); }

}  // namespace

absl::Status ValidateLimits(const ContainerLimits& r) {
  if (r.cpu_period != 0 && (r.cpu_period < 1000 || r.cpu_period > 1000000)) {
    return Invalid(absl::StrCat("cpu_period ", r.cpu_period, " is outside 1000..1000000 us"));
  }
  if (r.cpu_quota != 0 && r.cpu_quota != -1 && r.cpu_quota < 1000) {
    return Invalid(absl::StrCat("cpu_quota ", r.cpu_quota, " is neither -1 nor at least 1000 us"));
  }
  if (r.cpu_shares != 0 && (r.cpu_shares < 2 || r.cpu_shares > 262144)) {
    return Invalid(absl::StrCat("cpu_shares ", r.cpu_shares, " is outside 2..262144"));
  }
  if (r.memory_limit_bytes != 0 && r.memory_limit_bytes != -1 &&
      r.memory_limit_bytes < kMinMemoryLimit) {
    return Invalid(absl::StrCat("memory_limit_in_bytes ", r.memory_limit_bytes,
                                " is below 4 MiB: no container runs in that"));
  }
  if (r.memory_swap_limit_bytes != 0 && r.memory_swap_limit_bytes != -1) {
    if (r.memory_swap_limit_bytes < kMinMemoryLimit) {
      return Invalid(absl::StrCat("memory_swap_limit_in_bytes ", r.memory_swap_limit_bytes,
                                  " is below 4 MiB"));
    }
    if (r.memory_limit_bytes > 0 && r.memory_swap_limit_bytes < r.memory_limit_bytes) {
      return Invalid("memory_swap_limit_in_bytes (memory + swap) is below memory_limit_in_bytes");
    }
  }
  if (r.oom_score_adj < -1000 || r.oom_score_adj > 1000) {
    return Invalid(absl::StrCat("oom_score_adj ", r.oom_score_adj, " is outside -1000..1000"));
  }
  if (!IsCpuList(r.cpuset_cpus)) return Invalid("cpuset_cpus is not a CPU list like 0-1,3");
  if (!IsCpuList(r.cpuset_mems)) return Invalid("cpuset_mems is not a node list like 0");
  for (const auto& [size, limit] : r.hugepage_limits) {
    if (!IsPageSize(size))
      return Invalid(absl::StrCat("hugepage size \"", size, "\" is not like 2MB"));
  }
  for (const auto& [key, value] : r.unified) {
    if (key.empty() || key[0] == '.' || key.find('/') != std::string::npos ||
        key.find('.') == std::string::npos) {
      return Invalid(absl::StrCat("unified key \"", key, "\" is not a cgroup v2 file name"));
    }
  }
  return absl::OkStatus();
}

ContainerLimits MergeLimits(const ContainerLimits& base, const ContainerLimits& update) {
  ContainerLimits out = base;
  if (update.cpu_period != 0) out.cpu_period = update.cpu_period;
  if (update.cpu_quota != 0) out.cpu_quota = update.cpu_quota;
  if (update.cpu_shares != 0) out.cpu_shares = update.cpu_shares;
  if (update.memory_limit_bytes != 0) out.memory_limit_bytes = update.memory_limit_bytes;
  if (!update.cpuset_cpus.empty()) out.cpuset_cpus = update.cpuset_cpus;
  if (!update.cpuset_mems.empty()) out.cpuset_mems = update.cpuset_mems;
  if (update.memory_swap_limit_bytes != 0) {
    out.memory_swap_limit_bytes = update.memory_swap_limit_bytes;
  }
  if (update.oom_score_adj != 0) out.oom_score_adj = update.oom_score_adj;
  for (const auto& [k, v] : update.hugepage_limits) out.hugepage_limits[k] = v;
  for (const auto& [k, v] : update.unified) out.unified[k] = v;
  return out;
}

std::string ContainerName(const std::string& name, const std::string& pod_name,
                          const std::string& pod_namespace, const std::string& pod_uid,
                          uint32_t attempt) {
  return absl::StrCat(name, "_", pod_name, "_", pod_namespace, "_", pod_uid, "_", attempt);
}

}  // namespace podvisor
