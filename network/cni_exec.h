#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "network/cni_types.h"
#include "nlohmann/json.hpp"

namespace podvisor::network {

// What one ADD/CHECK/DEL is about (the CNI_* environment and the runtime config).
struct CniRuntimeConf {
  std::string container_id;
  std::string netns;  // path of the pod's netns file
  std::string ifname = "eth0";
  std::vector<std::pair<std::string, std::string>> args;  // CNI_ARGS, e.g. K8S_POD_NAME
  // Values for plugin capabilities, keyed by capability ("portMappings", "dns", ...). A plugin
  // gets runtimeConfig.<key> only when its conf says capabilities.<key> = true.
  nlohmann::json capability_args = nlohmann::json::object();
};

// Runs CNI plugins with the exec protocol: CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME,
// CNI_ARGS and CNI_PATH in the environment, the network config on stdin, the result (or an error
// object) on stdout. Thread-safe (no state beyond its immutable settings).
class CniExec {
 public:
  CniExec(std::vector<std::string> bin_dirs, absl::Duration timeout = absl::Seconds(60))
      : bin_dirs_(std::move(bin_dirs)), timeout_(timeout) {}

  // ADD through every plugin in order, each getting the previous one's result as prevResult.
  // Returns the last plugin's raw result (JSON text). Nothing is undone on failure: the caller
  // runs DEL.
  absl::StatusOr<std::string> AddNetworkList(const CniConfList& list,
                                             const CniRuntimeConf& rt) const;

  // CHECK through every plugin with the cached result. A no-op for versions before 0.4.0 or when
  // the list has disableCheck.
  absl::Status CheckNetworkList(const CniConfList& list, const CniRuntimeConf& rt,
                                const std::string& prev_result) const;

  // DEL through every plugin in reverse order with the cached result (empty: none), going on
  // past failures so that as much as possible is released; returns the first error.
  absl::Status DelNetworkList(const CniConfList& list, const CniRuntimeConf& rt,
                              const std::string& prev_result) const;

  // The config a plugin receives on stdin (exposed for tests).
  static nlohmann::json PluginStdin(const CniConfList& list, const CniPluginConf& plugin,
                                    const CniRuntimeConf& rt, const nlohmann::json* prev_result);

  const std::vector<std::string>& bin_dirs() const { return bin_dirs_; }

 private:
  // Runs one plugin; returns its stdout on success.
  absl::StatusOr<std::string> Invoke(const char* command, const CniConfList& list,
                                     const CniPluginConf& plugin, const CniRuntimeConf& rt,
                                     const nlohmann::json* prev_result) const;

  const std::vector<std::string> bin_dirs_;
  const absl::Duration timeout_;
};

}  // namespace podvisor::network
