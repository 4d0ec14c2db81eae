#include "network/cni_exec.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "network/process.h"

namespace podvisor::network {
namespace {

using nlohmann::json;

std::string Trimmed(const std::string& s) { return std::string(absl::StripAsciiWhitespace(s)); }

}  // namespace

json CniExec::PluginStdin(const CniConfList& list, const CniPluginConf& plugin,
                          const CniRuntimeConf& rt, const json* prev_result) {
  json conf = plugin.raw;
  conf["name"] = list.name;
  conf["cniVersion"] = list.cni_version;
  if (prev_result != nullptr && !prev_result->is_null()) conf["prevResult"] = *prev_result;
  json runtime_config = json::object();
  for (const auto& [cap, enabled] : plugin.capabilities) {
    if (!enabled) continue;
    auto value = rt.capability_args.find(cap);
    if (value != rt.capability_args.end()) runtime_config[cap] = *value;
  }
  if (!runtime_config.empty()) conf["runtimeConfig"] = runtime_config;
  return conf;
}

absl::StatusOr<std::string> CniExec::Invoke(const char* command, const CniConfList& list,
                                            const CniPluginConf& plugin, const CniRuntimeConf& rt,
                                            const json* prev_result) const {
  const std::string context = absl::StrCat("CNI ", command, " plugin ", plugin.type);
  absl::StatusOr<std::string> path = FindExecutable(plugin.type, bin_dirs_);
  if (!path.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(context, ": ", path.status().message()));
  }
  std::vector<std::string> args;
  for (const auto& [k, v] : rt.args) args.push_back(absl::StrCat(k, "=", v));
  ProcessOptions opts;
  opts.argv = {*path};
  opts.env = {
      absl::StrCat("CNI_COMMAND=", command),
      absl::StrCat("CNI_CONTAINERID=", rt.container_id),
      absl::StrCat("CNI_NETNS=", rt.netns),
      absl::StrCat("CNI_IFNAME=", rt.ifname),
      absl::StrCat("CNI_ARGS=", absl::StrJoin(args, ";")),
      absl::StrCat("CNI_PATH=", absl::StrJoin(bin_dirs_, ":")),
      // Plugins run iptables, ip and friends found on PATH.
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  };
  opts.stdin_data = PluginStdin(list, plugin, rt, prev_result).dump();
  opts.timeout = timeout_;
  absl::StatusOr<ProcessResult> r = RunProcess(opts);
  if (!r.ok())
    return absl::Status(r.status().code(), absl::StrCat(context, ": ", r.status().message()));
  if (r->exit_code == 0) return r->stdout_data;
  absl::StatusOr<CniError> error = ParseCniError(r->stdout_data);
  if (error.ok()) return CniErrorToStatus(*error, context);
  std::string how = r->signal != 0 ? absl::StrCat("killed by signal ", r->signal)
                                   : absl::StrCat("exited with ", r->exit_code);
  std::string out = Trimmed(r->stderr_data.empty() ? r->stdout_data : r->stderr_data);
  return absl::InternalError(absl::StrCat(context, ": ", how, out.empty() ? "" : ": ", out));
}

absl::StatusOr<std::string> CniExec::AddNetworkList(const CniConfList& list,
                                                    const CniRuntimeConf& rt) const {
  json prev;  // null for the first plugin
  std::string last;
  for (const auto& plugin : list.plugins) {
    absl::StatusOr<std::string> out =
        Invoke("ADD", list, plugin, rt, prev.is_null() ? nullptr : &prev);
    if (!out.ok()) return out.status();
    json parsed = json::parse(*out, nullptr, false);
    if (parsed.is_discarded() || !parsed.is_object()) {
      return absl::InternalError(absl::StrCat("CNI ADD plugin ", plugin.type,
                                              ": output is not a JSON result: ", Trimmed(*out)));
    }
    prev = std::move(parsed);
    last = *out;
  }
  return last;
}

absl::Status CniExec::CheckNetworkList(const CniConfList& list, const CniRuntimeConf& rt,
                                       const std::string& prev_result) const {
  if (list.disable_check || CompareCniVersions(list.cni_version, "0.4.0") < 0) {
    return absl::OkStatus();
  }
  json prev = json::parse(prev_result, nullptr, false);
  if (prev.is_discarded())
    return absl::InvalidArgumentError("CNI CHECK: cached result is not JSON");
  for (const auto& plugin : list.plugins) {
    absl::StatusOr<std::string> out = Invoke("CHECK", list, plugin, rt, &prev);
    if (!out.ok()) return out.status();
  }
  return absl::OkStatus();
}

absl::Status CniExec::DelNetworkList(const CniConfList& list, const CniRuntimeConf& rt,
                                     const std::string& prev_result) const {
  json prev;
  if (!prev_result.empty() && CompareCniVersions(list.cni_version, "0.4.0") >= 0) {
    prev = json::parse(prev_result, nullptr, false);
    if (prev.is_discarded()) prev = json();
  }
  absl::Status first;
  for (auto it = list.plugins.rbegin(); it != list.plugins.rend(); ++it) {
    absl::StatusOr<std::string> out =
        Invoke("DEL", list, *it, rt, prev.is_null() ? nullptr : &prev);
    if (!out.ok() && first.ok()) first = out.status();
  }
  return first;
}

}  // namespace podvisor::network
