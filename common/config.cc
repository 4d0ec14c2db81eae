#include "common/config.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "yaml-cpp/yaml.h"

namespace podvisor {
namespace {

absl::Status KeyError(const std::string& key, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("config key '", key, "': ", what));
}

// Rejects keys of `node` that are not in `known`.
absl::Status CheckKeys(const YAML::Node& node, const std::string& prefix,
                       const std::set<std::string>& known) {
  if (!node.IsMap()) return KeyError(prefix.empty() ? "<top>" : prefix, "must be a mapping");
  for (const auto& kv : node) {
    std::string key = kv.first.as<std::string>();
    if (!known.contains(key)) {
      return KeyError(prefix.empty() ? key : absl::StrCat(prefix, ".", key),
                      absl::StrCat("unknown key (known: ", absl::StrJoin(known, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

std::string Join(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : absl::StrCat(prefix, ".", key);
}

absl::Status GetString(const YAML::Node& node, const std::string& prefix, const std::string& key,
                       std::string& out) {
  const YAML::Node v = node[key];
  if (!v) return absl::OkStatus();
  if (!v.IsScalar()) return KeyError(Join(prefix, key), "must be a string");
  out = v.as<std::string>();
  return absl::OkStatus();
}

absl::Status GetInt(const YAML::Node& node, const std::string& prefix, const std::string& key,
                    int64_t min, int64_t max, int64_t& out) {
  const YAML::Node v = node[key];
  if (!v) return absl::OkStatus();
  int64_t value = 0;
  if (!v.IsScalar() || !YAML::convert<int64_t>::decode(v, value)) {
    return KeyError(Join(prefix, key), "must be an integer");
  }
  if (value < min || value > max) {
    return KeyError(Join(prefix, key), absl::StrCat("must be between ", min, " and ", max));
  }
  out = value;
  return absl::OkStatus();
}

absl::Status GetBool(const YAML::Node& node, const std::string& prefix, const std::string& key,
                     bool& out) {
  const YAML::Node v = node[key];
  if (!v) return absl::OkStatus();
  bool value = false;
  if (!v.IsScalar() || !YAML::convert<bool>::decode(v, value)) {
    return KeyError(Join(prefix, key), "must be true or false");
  }
  out = value;
  return absl::OkStatus();
}

absl::Status GetStringList(const YAML::Node& node, const std::string& prefix,
                           const std::string& key, std::vector<std::string>& out) {
  const YAML::Node v = node[key];
  if (!v) return absl::OkStatus();
  if (!v.IsSequence()) return KeyError(Join(prefix, key), "must be a list of strings");
  std::vector<std::string> values;
  for (const auto& item : v) {
    if (!item.IsScalar()) return KeyError(Join(prefix, key), "must be a list of strings");
    values.push_back(item.as<std::string>());
  }
  out = std::move(values);
  return absl::OkStatus();
}

absl::Status GetIntList(const YAML::Node& node, const std::string& prefix, const std::string& key,
                        int64_t min, int64_t max, std::vector<int64_t>& out) {
  const YAML::Node v = node[key];
  if (!v) return absl::OkStatus();
  if (!v.IsSequence() || v.size() > 16) {
    return KeyError(Join(prefix, key), "must be a list of at most 16 integers");
  }
  std::vector<int64_t> values;
  for (const auto& item : v) {
    int64_t value = 0;
    if (!item.IsScalar() || !YAML::convert<int64_t>::decode(item, value)) {
      return KeyError(Join(prefix, key), "must be a list of integers");
    }
    if (value < min || value > max) {
      return KeyError(Join(prefix, key), absl::StrCat("values must be between ", min, " and ", max));
    }
    values.push_back(value);
  }
  out = std::move(values);
  return absl::OkStatus();
}

absl::Status OneOf(const std::string& key, const std::string& value,
                   const std::set<std::string>& allowed) {
  if (allowed.contains(value)) return absl::OkStatus();
  return KeyError(key, absl::StrCat("'", value, "' is not one of ", absl::StrJoin(allowed, ", ")));
}

// --- Limits and hardening: image pulls, CRI input, the VM and its console (docs/reliability.md)

const std::set<std::string>& HardeningHypervisorKeys() {
  static const std::set<std::string> keys = {"qemu_sandbox", "guest_mitigations",
                                             "console_log_max_bytes", "shared_dir_max_bytes",
                                             "empty_dir_max_bytes", "agent_dead_after_ms"};
  return keys;
}

const std::set<std::string>& PullLimitKeys() {
  static const std::set<std::string> keys = {"max_layers", "pull_progress_timeout_seconds",
                                             "pull_min_bytes_per_second", "min_free_disk_bytes"};
  return keys;
}

std::set<std::string> With(std::set<std::string> known, const std::set<std::string>& more) {
  known.insert(more.begin(), more.end());
  return known;
}

absl::Status ParseHardeningHypervisor(const YAML::Node& n, HypervisorConfig& h) {
  const std::string p = "hypervisor";
  for (auto s : {GetBool(n, p, "qemu_sandbox", h.qemu_sandbox),
                 GetBool(n, p, "guest_mitigations", h.guest_mitigations),
                 GetInt(n, p, "console_log_max_bytes", 64 << 10, int64_t{1} << 40,
                        h.console_log_max_bytes),
                 GetInt(n, p, "shared_dir_max_bytes", 1 << 20, int64_t{1} << 40,
                        h.shared_dir_max_bytes),
                 GetInt(n, p, "empty_dir_max_bytes", 0, int64_t{1} << 50, h.empty_dir_max_bytes),
                 GetInt(n, p, "agent_dead_after_ms", 1000, 3600000, h.agent_dead_after_ms)}) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ParsePullLimits(const YAML::Node& n, RegistryConfig& c) {
  const std::string p = "registry";
  for (auto s :
       {GetInt(n, p, "max_layers", 1, 4096, c.max_layers),
        GetInt(n, p, "pull_progress_timeout_seconds", 1, 3600, c.pull_progress_timeout_seconds),
        GetInt(n, p, "pull_min_bytes_per_second", 1, int64_t{1} << 30, c.pull_min_bytes_per_second),
        GetInt(n, p, "min_free_disk_bytes", 0, int64_t{1} << 50, c.min_free_disk_bytes)}) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

nlohmann::json HardeningToJson(const Config& c) {
  return {
      {"hypervisor",
       {{"qemu_sandbox", c.hypervisor.qemu_sandbox},
        {"guest_mitigations", c.hypervisor.guest_mitigations},
        {"console_log_max_bytes", c.hypervisor.console_log_max_bytes},
        {"shared_dir_max_bytes", c.hypervisor.shared_dir_max_bytes},
        {"empty_dir_max_bytes", c.hypervisor.empty_dir_max_bytes},
        {"agent_dead_after_ms", c.hypervisor.agent_dead_after_ms}}},
      {"registry",
       {{"max_layers", c.registry.max_layers},
        {"pull_progress_timeout_seconds", c.registry.pull_progress_timeout_seconds},
        {"pull_min_bytes_per_second", c.registry.pull_min_bytes_per_second},
        {"min_free_disk_bytes", c.registry.min_free_disk_bytes}}},
      {"seccomp_profile_max_bytes", c.seccomp_profile_max_bytes},
      {"stats",
       {{"max_parallel", c.stats.max_parallel}, {"agent_timeout_ms", c.stats.agent_timeout_ms}}}};
}

absl::Status ParseStats(const YAML::Node& n, StatsConfig& c) {
  const std::string p = "stats";
  if (absl::Status s = CheckKeys(n, p, {"max_parallel", "agent_timeout_ms"}); !s.ok()) return s;
  for (auto s : {GetInt(n, p, "max_parallel", 1, 1024, c.max_parallel),
                 GetInt(n, p, "agent_timeout_ms", 10, 60000, c.agent_timeout_ms)}) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

// --- end of limits and hardening

absl::Status ParseHypervisor(const YAML::Node& n, HypervisorConfig& h) {
  const std::string p = "hypervisor";
  if (absl::Status s =
          CheckKeys(n, p,
                    With({"accel", "libvirt_uri", "default_vcpus", "default_memory_mib", "kernel",
                          "initrd", "boot_timeout_seconds", "shared_filesystem", "virtiofsd", "templates",
                          "template_dir", "template_memory_mib"},
                         HardeningHypervisorKeys()));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ParseHardeningHypervisor(n, h); !s.ok()) return s;
  for (auto s : {GetString(n, p, "accel", h.accel), GetString(n, p, "libvirt_uri", h.libvirt_uri),
                 GetInt(n, p, "default_vcpus", 1, 64, h.default_vcpus),
                 GetInt(n, p, "default_memory_mib", 64, 1 << 20, h.default_memory_mib),
                 GetString(n, p, "kernel", h.kernel), GetString(n, p, "initrd", h.initrd),
                 GetInt(n, p, "boot_timeout_seconds", 1, 600, h.boot_timeout_seconds),
                 GetBool(n, p, "shared_filesystem", h.shared_filesystem),
                 GetString(n, p, "virtiofsd", h.virtiofsd),
                 GetBool(n, p, "templates", h.templates),
                 GetString(n, p, "template_dir", h.template_dir),
                 GetIntList(n, p, "template_memory_mib", 64, 1 << 20, h.template_memory_mib)}) {
    if (!s.ok()) return s;
  }
  return OneOf("hypervisor.accel", h.accel, {"auto", "kvm", "tcg"});
}

// The streaming server's limits (docs/reliability.md).
absl::Status ParseStreamingLimits(const YAML::Node& n, StreamingConfig& c) {
  const std::string p = "streaming";
  for (auto s : {
           GetInt(n, p, "request_header_timeout_seconds", 1, 3600, c.request_header_timeout_seconds),
           GetInt(n, p, "stream_creation_timeout_seconds", 1, 3600,
                  c.stream_creation_timeout_seconds),
           GetInt(n, p, "idle_timeout_seconds", 1, 7 * 24 * 3600, c.idle_timeout_seconds),
           GetInt(n, p, "max_connections", 1, 65536, c.max_connections),
           GetInt(n, p, "max_unauthenticated_connections", 1, 65536,
                  c.max_unauthenticated_connections),
           GetInt(n, p, "max_unauthenticated_per_source", 1, 65536,
                  c.max_unauthenticated_per_source),
           GetInt(n, p, "max_sessions", 1, 65536, c.max_sessions),
           GetInt(n, p, "max_ports_per_request", 1, 128, c.max_ports_per_request),
           GetInt(n, p, "max_forwards_per_connection", 1, 500, c.max_forwards_per_connection),
           GetInt(n, p, "max_buffered_input_kib", 64, 1 << 20, c.max_buffered_input_kib),
           GetInt(n, p, "max_queued_control_frames", 16, 1 << 20, c.max_queued_control_frames),
           GetInt(n, p, "output_window_kib", 64, 16384, c.output_window_kib)}) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ParseStreaming(const YAML::Node& n, StreamingConfig& c) {
  const std::string p = "streaming";
  if (absl::Status s = CheckKeys(
          n, p,
          {"address", "port", "tls_cert_file", "tls_key_file", "request_header_timeout_seconds",
           "stream_creation_timeout_seconds", "idle_timeout_seconds", "max_connections",
           "max_unauthenticated_connections", "max_unauthenticated_per_source", "max_sessions",
           "max_ports_per_request", "max_forwards_per_connection", "max_buffered_input_kib",
           "max_queued_control_frames", "output_window_kib"});
      !s.ok()) {
    return s;
  }
  for (auto s : {GetString(n, p, "address", c.address), GetInt(n, p, "port", 0, 65535, c.port),
                 GetString(n, p, "tls_cert_file", c.tls_cert_file),
                 GetString(n, p, "tls_key_file", c.tls_key_file)}) {
    if (!s.ok()) return s;
  }
  if (absl::Status s = ParseStreamingLimits(n, c); !s.ok()) return s;
  if (c.tls_cert_file.empty() != c.tls_key_file.empty()) {
    return KeyError("streaming.tls_cert_file", "tls_cert_file and tls_key_file go together");
  }
  return absl::OkStatus();
}

absl::Status ParseCni(const YAML::Node& n, CniConfig& c) {
  const std::string p = "cni";
  if (absl::Status s = CheckKeys(n, p, {"conf_dir", "bin_dirs"}); !s.ok()) return s;
  if (absl::Status s = GetString(n, p, "conf_dir", c.conf_dir); !s.ok()) return s;
  return GetStringList(n, p, "bin_dirs", c.bin_dirs);
}

absl::Status ParseRegistry(const YAML::Node& n, RegistryConfig& c) {
  const std::string p = "registry";
  if (absl::Status s = CheckKeys(
          n, p, With({"hosts", "max_concurrent_downloads", "pinned_images"}, PullLimitKeys()));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ParsePullLimits(n, c); !s.ok()) return s;
  if (absl::Status s = GetStringList(n, p, "pinned_images", c.pinned_images); !s.ok()) return s;
  if (absl::Status s = GetInt(n, p, "max_concurrent_downloads", 1, 64, c.max_concurrent_downloads);
      !s.ok()) {
    return s;
  }
  const YAML::Node hosts = n["hosts"];
  if (!hosts) return absl::OkStatus();
  if (!hosts.IsMap()) return KeyError("registry.hosts", "must be a mapping of host to settings");
  for (const auto& kv : hosts) {
    const std::string host = kv.first.as<std::string>();
    const std::string hp = absl::StrCat("registry.hosts.", host);
    RegistryHostConfig h;
    if (absl::Status s =
            CheckKeys(kv.second, hp, {"mirrors", "insecure_skip_verify", "plain_http", "ca_file"});
        !s.ok()) {
      return s;
    }
    for (auto s : {GetStringList(kv.second, hp, "mirrors", h.mirrors),
                   GetBool(kv.second, hp, "insecure_skip_verify", h.insecure_skip_verify),
                   GetBool(kv.second, hp, "plain_http", h.plain_http),
                   GetString(kv.second, hp, "ca_file", h.ca_file)}) {
      if (!s.ok()) return s;
    }
    for (const std::string& m : h.mirrors) {
      if (!absl::StartsWith(m, "http://") && !absl::StartsWith(m, "https://")) {
        return KeyError(hp + ".mirrors", absl::StrCat("'", m, "' must start with http:// or https://"));
      }
    }
    c.hosts[host] = std::move(h);
  }
  return absl::OkStatus();
}

absl::Status ParseHandlers(const YAML::Node& n, HandlersConfig& c) {
  const std::string p = "handlers";
  if (absl::Status s = CheckKeys(n, p, {"host_pods", "crun", "monitor"}); !s.ok()) return s;
  for (auto s : {GetString(n, p, "host_pods", c.host_pods), GetString(n, p, "crun", c.crun),
                 GetString(n, p, "monitor", c.monitor)}) {
    if (!s.ok()) return s;
  }
  if (c.crun.empty() || c.crun[0] != '/') return KeyError("handlers.crun", "must be absolute");
  if (!c.monitor.empty() && c.monitor[0] != '/') {
    return KeyError("handlers.monitor", "must be absolute");
  }
  return OneOf("handlers.host_pods", c.host_pods, {"host", "refuse"});
}

absl::Status ParseMetrics(const YAML::Node& n, MetricsConfig& c) {
  if (absl::Status s = CheckKeys(n, "metrics", {"address"}); !s.ok()) return s;
  if (absl::Status s = GetString(n, "metrics", "address", c.address); !s.ok()) return s;
  if (c.address.empty()) return absl::OkStatus();
  const size_t colon = c.address.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(c.address.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return KeyError("metrics.address",
                    absl::StrCat("'", c.address, "' is not host:port (empty disables metrics)"));
  }
  return absl::OkStatus();
}

// Merges `overlay` into `base`: mappings key by key, anything else replaced whole.
void MergeYaml(YAML::Node base, const YAML::Node& overlay) {
  for (const auto& kv : overlay) {
    const std::string key = kv.first.as<std::string>();
    YAML::Node existing = base[key];
    if (existing && existing.IsMap() && kv.second.IsMap()) {
      MergeYaml(existing, kv.second);
    } else {
      base[key] = YAML::Clone(kv.second);
    }
  }
}

absl::StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("config file ", path, ": cannot be read"));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::Status ParseTop(const YAML::Node& root, Config& c) {
  if (absl::Status s = CheckKeys(
          root, "",
          {"root_dir", "state_dir", "listen", "log_level", "streaming", "hypervisor", "cni",
           "registry", "handlers", "seccomp_profile_max_bytes", "metrics", "stats"});
      !s.ok()) {
    return s;
  }
  for (auto s :
       {GetString(root, "", "root_dir", c.root_dir), GetString(root, "", "state_dir", c.state_dir),
        GetString(root, "", "listen", c.listen), GetString(root, "", "log_level", c.log_level),
        GetInt(root, "", "seccomp_profile_max_bytes", 1024, 64 << 20,
               c.seccomp_profile_max_bytes)}) {
    if (!s.ok()) return s;
  }
  if (absl::Status s = OneOf("log_level", c.log_level, {"debug", "info", "warning", "error"});
      !s.ok()) {
    return s;
  }
  if (c.root_dir.empty() || c.root_dir[0] != '/') return KeyError("root_dir", "must be absolute");
  if (c.state_dir.empty() || c.state_dir[0] != '/') return KeyError("state_dir", "must be absolute");
  if (UnixSocketPath(c.listen).empty()) {
    return KeyError("listen", "must be unix:///absolute/path.sock");
  }
  if (root["streaming"]) {
    if (absl::Status s = ParseStreaming(root["streaming"], c.streaming); !s.ok()) return s;
  }
  if (root["hypervisor"]) {
    if (absl::Status s = ParseHypervisor(root["hypervisor"], c.hypervisor); !s.ok()) return s;
  }
  if (root["cni"]) {
    if (absl::Status s = ParseCni(root["cni"], c.cni); !s.ok()) return s;
  }
  if (root["registry"]) {
    if (absl::Status s = ParseRegistry(root["registry"], c.registry); !s.ok()) return s;
  }
  if (root["handlers"]) {
    if (absl::Status s = ParseHandlers(root["handlers"], c.handlers); !s.ok()) return s;
  }
  if (root["metrics"]) {
    if (absl::Status s = ParseMetrics(root["metrics"], c.metrics); !s.ok()) return s;
  }
  if (root["stats"]) {
    if (absl::Status s = ParseStats(root["stats"], c.stats); !s.ok()) return s;
  }
  return absl::OkStatus();
}

nlohmann::json ConfigToJsonBase(const Config& c);

}  // namespace

std::string UnixSocketPath(const std::string& listen) {
  std::string path;
  if (absl::StartsWith(listen, "unix://")) {
    path = listen.substr(7);
  } else if (absl::StartsWith(listen, "unix:")) {
    path = listen.substr(5);
  }
  if (path.empty() || path[0] != '/') return "";
  return path;
}

absl::StatusOr<Config> ParseConfig(const std::string& yaml_text) {
  return ParseMergedConfig({yaml_text}, {"config"});
}

absl::StatusOr<Config> ParseMergedConfig(const std::vector<std::string>& yaml_texts,
                                         const std::vector<std::string>& names) {
  Config config;
  YAML::Node root(YAML::NodeType::Map);
  bool any = false;
  for (size_t i = 0; i < yaml_texts.size(); ++i) {
    const std::string name = i < names.size() ? names[i] : "config";
    YAML::Node node;
    try {
      node = YAML::Load(yaml_texts[i]);
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(name, " is not valid YAML: ", e.what()));
    }
    if (node.IsNull()) continue;  // an empty file adds nothing
    if (!node.IsMap()) return KeyError("<top>", "must be a mapping");
    MergeYaml(root, node);
    any = true;
  }
  if (!any) return config;  // only empty files: the defaults
  try {
    if (absl::Status s = ParseTop(root, config); !s.ok()) return s;
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config: ", e.what()));
  }
  return config;
}

std::vector<std::string> ConfigDropIns(const std::string& path) {
  std::vector<std::string> files;
  std::error_code ec;
  const std::filesystem::path dir = std::filesystem::path(path).parent_path() / "config.d";
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() != ".yaml") continue;
    if (!entry.is_regular_file(ec)) continue;
    files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

absl::StatusOr<Config> LoadConfig(const std::string& path, bool must_exist) {
  std::vector<std::string> texts, names;
  std::error_code ec;
  if (must_exist || std::filesystem::exists(path, ec) || ec) {
    absl::StatusOr<std::string> main_text = ReadText(path);
    if (!main_text.ok()) return main_text.status();
    texts.push_back(*std::move(main_text));
    names.push_back(path);
  }
  for (const std::string& file : ConfigDropIns(path)) {
    absl::StatusOr<std::string> text = ReadText(file);
    if (!text.ok()) return text.status();
    texts.push_back(*std::move(text));
    names.push_back(file);
  }
  absl::StatusOr<Config> config = ParseMergedConfig(texts, names);
  // Key errors are found in the merged document: name every file that went into it.
  if (!config.ok() && !names.empty() &&
      absl::StartsWith(config.status().message(), "config")) {
    return absl::Status(config.status().code(),
                        absl::StrCat(absl::StrJoin(names, " + "), ": ", config.status().message()));
  }
  return config;
}

nlohmann::json ConfigToJson(const Config& c) {
  nlohmann::json out = ConfigToJsonBase(c);
  nlohmann::json hardening = HardeningToJson(c);
  for (auto& [section, values] : hardening.items()) {
    if (values.is_object()) {
      out[section].update(values);
    } else {
      out[section] = values;
    }
  }
  return out;
}

namespace {
nlohmann::json ConfigToJsonBase(const Config& c) {
  nlohmann::json hosts = nlohmann::json::object();
  for (const auto& [host, h] : c.registry.hosts) {
    hosts[host] = {{"mirrors", h.mirrors},
                   {"insecure_skip_verify", h.insecure_skip_verify},
                   {"plain_http", h.plain_http},
                   {"ca_file", h.ca_file}};
  }
  return {
      {"root_dir", c.root_dir},
      {"state_dir", c.state_dir},
      {"listen", c.listen},
      {"log_level", c.log_level},
      {"streaming",
       {{"address", c.streaming.address},
        {"port", c.streaming.port},
        {"tls_cert_file", c.streaming.tls_cert_file},
        {"tls_key_file", c.streaming.tls_key_file},
        {"request_header_timeout_seconds", c.streaming.request_header_timeout_seconds},
        {"stream_creation_timeout_seconds", c.streaming.stream_creation_timeout_seconds},
        {"idle_timeout_seconds", c.streaming.idle_timeout_seconds},
        {"max_connections", c.streaming.max_connections},
        {"max_unauthenticated_connections", c.streaming.max_unauthenticated_connections},
        {"max_unauthenticated_per_source", c.streaming.max_unauthenticated_per_source},
        {"max_sessions", c.streaming.max_sessions},
        {"max_ports_per_request", c.streaming.max_ports_per_request},
        {"max_forwards_per_connection", c.streaming.max_forwards_per_connection},
        {"max_buffered_input_kib", c.streaming.max_buffered_input_kib},
        {"max_queued_control_frames", c.streaming.max_queued_control_frames},
        {"output_window_kib", c.streaming.output_window_kib}}},
      {"hypervisor",
       {{"accel", c.hypervisor.accel},
        {"libvirt_uri", c.hypervisor.libvirt_uri},
        {"default_vcpus", c.hypervisor.default_vcpus},
        {"default_memory_mib", c.hypervisor.default_memory_mib},
        {"kernel", c.hypervisor.kernel},
        {"initrd", c.hypervisor.initrd},
        {"boot_timeout_seconds", c.hypervisor.boot_timeout_seconds},
        {"shared_filesystem", c.hypervisor.shared_filesystem},
        {"virtiofsd", c.hypervisor.virtiofsd},
        {"templates", c.hypervisor.templates},
        {"template_dir", c.hypervisor.template_dir},
        {"template_memory_mib", c.hypervisor.template_memory_mib}}},
      {"cni", {{"conf_dir", c.cni.conf_dir}, {"bin_dirs", c.cni.bin_dirs}}},
      {"registry",
       {{"hosts", hosts},
        {"max_concurrent_downloads", c.registry.max_concurrent_downloads},
        {"pinned_images", c.registry.pinned_images}}},
      {"handlers",
       {{"host_pods", c.handlers.host_pods},
        {"crun", c.handlers.crun},
        {"monitor", c.handlers.monitor}}},
      {"metrics", {{"address", c.metrics.address}}},
  };
}

}  // namespace

}  // namespace podvisor
