#include "pod-sandbox/seccomp.h"

#include <atomic>
#include <cerrno>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"

namespace podvisor {
namespace {

std::atomic<int64_t> profile_max_bytes{1 << 20};

using nlohmann::json;

// Syscalls RuntimeDefault refuses (EPERM), each with the capability that lifts the refusal
// (empty: none does). Names libseccomp resolves on x86_64; they are refused on the 32-bit ABIs
// too.
const std::pair<const char*, const char*> kRefused[] = {
    {"acct", "CAP_SYS_PACCT"},
    {"add_key", ""},
    {"bpf", "CAP_SYS_ADMIN"},
    {"clock_adjtime", "CAP_SYS_TIME"},
    {"clock_settime", "CAP_SYS_TIME"},
    {"adjtimex", "CAP_SYS_TIME"},
    {"settimeofday", "CAP_SYS_TIME"},
    {"create_module", "CAP_SYS_MODULE"},
    {"delete_module", "CAP_SYS_MODULE"},
    {"finit_module", "CAP_SYS_MODULE"},
    {"init_module", "CAP_SYS_MODULE"},
    {"get_kernel_syms", ""},
    {"query_module", ""},
    {"get_mempolicy", "CAP_SYS_NICE"},
    {"mbind", "CAP_SYS_NICE"},
    {"move_pages", "CAP_SYS_NICE"},
    {"set_mempolicy", "CAP_SYS_NICE"},
    {"ioperm", "CAP_SYS_RAWIO"},
    {"iopl", "CAP_SYS_RAWIO"},
    {"kcmp", "CAP_SYS_PTRACE"},
    {"process_vm_readv", "CAP_SYS_PTRACE"},
    {"process_vm_writev", "CAP_SYS_PTRACE"},
    {"ptrace", "CAP_SYS_PTRACE"},
    {"kexec_file_load", "CAP_SYS_BOOT"},
    {"kexec_load", "CAP_SYS_BOOT"},
    {"reboot", "CAP_SYS_BOOT"},
    {"keyctl", ""},
    {"request_key", ""},
    {"lookup_dcookie", "CAP_SYS_ADMIN"},
    {"mount", "CAP_SYS_ADMIN"},
    {"umount2", "CAP_SYS_ADMIN"},
    {"pivot_root", "CAP_SYS_ADMIN"},
    {"move_mount", "CAP_SYS_ADMIN"},
    {"open_tree", "CAP_SYS_ADMIN"},
    {"fsopen", "CAP_SYS_ADMIN"},
    {"fsconfig", "CAP_SYS_ADMIN"},
    {"fsmount", "CAP_SYS_ADMIN"},
    {"fspick", "CAP_SYS_ADMIN"},
    {"mount_setattr", "CAP_SYS_ADMIN"},
    {"setns", "CAP_SYS_ADMIN"},
    {"unshare", "CAP_SYS_ADMIN"},
    {"quotactl", "CAP_SYS_ADMIN"},
    {"swapon", "CAP_SYS_ADMIN"},
    {"swapoff", "CAP_SYS_ADMIN"},
    {"fanotify_init", "CAP_SYS_ADMIN"},
    {"perf_event_open", "CAP_SYS_ADMIN"},
    {"name_to_handle_at", "CAP_SYS_ADMIN"},
    {"open_by_handle_at", "CAP_DAC_READ_SEARCH"},
    {"syslog", "CAP_SYSLOG"},
    {"nfsservctl", ""},
    {"sysfs", ""},
    {"_sysctl", ""},
    {"uselib", ""},
    {"ustat", ""},
    {"userfaultfd", ""},
};

const char* const kArchitectures[] = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"};

constexpr int kEperm = EPERM;

json RuntimeDefault(const std::set<std::string>& caps) {
  json names = json::array();
  for (const auto& [name, cap] : kRefused) {
    if (*cap != '\0' && caps.contains(cap)) continue;
    names.push_back(name);
  }
  return json{{"defaultAction", "SCMP_ACT_ALLOW"},
              {"architectures", kArchitectures},
              {"syscalls", json::array({json{{"names", names},
                                             {"action", "SCMP_ACT_ERRNO"},
                                             {"errnoRet", kEperm}}})}};
}

// "amd64" / "x86_64" style names in Docker profiles' includes/excludes.arches.
bool IsOurArch(const std::string& arch) {
  return arch == "amd64" || arch == "x86_64" || arch == "SCMP_ARCH_X86_64" || arch == "x32" ||
         arch == "SCMP_ARCH_X32" || arch == "386" || arch == "x86" || arch == "SCMP_ARCH_X86";
}

std::string CapName(const std::string& name) {
  return absl::StartsWith(name, "CAP_") ? name : absl::StrCat("CAP_", name);
}

// Docker's conditions on a rule: every included capability held and architecture ours, no
// excluded capability held and architecture not ours.
absl::StatusOr<bool> RuleApplies(const json& rule, const std::set<std::string>& caps,
                                 const std::string& where) {
  for (const char* key : {"includes", "excludes"}) {
    if (!rule.contains(key)) continue;
    const json& cond = rule[key];
    if (!cond.is_object()) return absl::InvalidArgumentError(absl::StrCat(where, ": bad ", key));
    const bool include = std::string(key) == "includes";
    if (cond.contains("caps")) {
      if (!cond["caps"].is_array()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": ", key, ".caps must be a list"));
      }
      for (const json& c : cond["caps"]) {
        if (!c.is_string()) return absl::InvalidArgumentError(absl::StrCat(where, ": bad cap"));
        const bool held = caps.contains(CapName(c.get<std::string>()));
        if (include && !held) return false;
        if (!include && held) return false;
      }
    }
    if (cond.contains("arches")) {
      if (!cond["arches"].is_array()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": ", key, ".arches must be a list"));
      }
      bool ours = false;
      for (const json& a : cond["arches"]) {
        if (a.is_string() && IsOurArch(a.get<std::string>())) ours = true;
      }
      if (include && !cond["arches"].empty() && !ours) return false;
      if (!include && ours) return false;
    }
  }
  return true;
}

absl::StatusOr<json> Localhost(const std::string& path, const std::set<std::string>& caps) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "seccomp localhost profile must be an absolute path on the node, got '", path, "'"));
  }
  absl::StatusOr<std::string> text = ReadFileLimited(path, SeccompProfileMaxBytes());
  if (absl::IsOutOfRange(text.status()) || absl::IsFailedPrecondition(text.status())) {
    return absl::InvalidArgumentError(
        absl::StrCat("seccomp profile: ", text.status().message(),
                     absl::IsOutOfRange(text.status()) ? " (seccomp_profile_max_bytes)" : ""));
  }
  if (!text.ok()) return absl::Status(text.status().code(),
                                      absl::StrCat("seccomp profile: ", text.status().message()));
  json in = json::parse(*text, nullptr, false);
  const std::string where = absl::StrCat("seccomp profile ", path);
  if (in.is_discarded() || !in.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": not a JSON object"));
  }
  if (!in.contains("defaultAction") || !in["defaultAction"].is_string() ||
      !absl::StartsWith(in["defaultAction"].get<std::string>(), "SCMP_ACT_")) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": defaultAction must be one of the SCMP_ACT_ actions"));
  }
  json out = json::object();
  out["defaultAction"] = in["defaultAction"];
  for (const char* key : {"defaultErrnoRet", "flags", "listenerPath", "listenerMetadata"}) {
    if (in.contains(key)) out[key] = in[key];
  }
  if (in.contains("architectures")) {
    out["architectures"] = in["architectures"];
  } else if (in.contains("archMap") && in["archMap"].is_array()) {
    json arches = json::array();
    for (const json& m : in["archMap"]) {
      if (!m.is_object() || m.value("architecture", "") != "SCMP_ARCH_X86_64") continue;
      arches.push_back("SCMP_ARCH_X86_64");
      if (m.contains("subArchitectures") && m["subArchitectures"].is_array()) {
        for (const json& s : m["subArchitectures"]) arches.push_back(s);
      }
    }
    if (!arches.empty()) out["architectures"] = arches;
  }
  json syscalls = json::array();
  if (in.contains("syscalls")) {
    if (!in["syscalls"].is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": syscalls must be a list"));
    }
    for (const json& rule : in["syscalls"]) {
      if (!rule.is_object()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": a syscalls entry is not an object"));
      }
      absl::StatusOr<bool> applies = RuleApplies(rule, caps, where);
      if (!applies.ok()) return applies.status();
      if (!*applies) continue;
      json names = json::array();
      if (rule.contains("names") && rule["names"].is_array()) names = rule["names"];
      if (rule.contains("name") && rule["name"].is_string()) names.push_back(rule["name"]);
      for (const json& n : names) {
        if (!n.is_string()) return absl::InvalidArgumentError(absl::StrCat(where, ": bad name"));
      }
      if (names.empty()) continue;
      if (!rule.contains("action") || !rule["action"].is_string() ||
          !absl::StartsWith(rule["action"].get<std::string>(), "SCMP_ACT_")) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": every syscalls entry needs an SCMP_ACT_ action"));
      }
      json r{{"names", names}, {"action", rule["action"]}};
      if (rule.contains("errnoRet")) r["errnoRet"] = rule["errnoRet"];
      if (rule.contains("args") && !rule["args"].is_null()) r["args"] = rule["args"];
      syscalls.push_back(std::move(r));
    }
  }
  if (!syscalls.empty()) out["syscalls"] = syscalls;
  return out;
}

}  // namespace

absl::StatusOr<std::string> SeccompProfileJson(const SeccompConfig& config,
                                               const std::set<std::string>& caps) {
  switch (config.kind) {
    case SeccompConfig::Kind::kUnconfined:
      return std::string();
    case SeccompConfig::Kind::kRuntimeDefault:
      return RuntimeDefault(caps).dump();
    case SeccompConfig::Kind::kLocalhost: {
      absl::StatusOr<json> profile = Localhost(config.localhost_path, caps);
      if (!profile.ok()) return profile.status();
      return profile->dump();
    }
  }
  return absl::InvalidArgumentError("unknown seccomp profile kind");
}

void SetSeccompProfileMaxBytes(int64_t max_bytes) { profile_max_bytes = max_bytes; }
int64_t SeccompProfileMaxBytes() { return profile_max_bytes.load(); }

}  // namespace podvisor
