#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "nlohmann/json.hpp"
#include "store/object_store.h"

namespace podvisor {

enum class SandboxState { kReady, kNotReady };

NLOHMANN_JSON_SERIALIZE_ENUM(SandboxState, {{SandboxState::kReady, "ready"},
                                            {SandboxState::kNotReady, "notready"}})

// What a sandbox was created with; never changes afterwards.
struct SandboxMetadata {
  std::string id;
  // Unique among live sandboxes: "<name>_<namespace>_<uid>_<attempt>", as kubelet expects.
  std::string name;
  std::string pod_name;
  std::string pod_namespace;
  std::string pod_uid;
  uint32_t attempt = 0;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  std::string runtime_handler;
  std::string log_directory;
  std::string hostname;
  int64_t created_at_ns = 0;
};

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(SandboxMetadata, id, name, pod_name,
                                                pod_namespace, pod_uid, attempt, labels,
                                                annotations, runtime_handler, log_directory,
                                                hostname, created_at_ns)

// What changes over a sandbox's life.
struct SandboxStatus {
  SandboxState state = SandboxState::kNotReady;
};

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(SandboxStatus, state)

using Sandbox = StoredObject<SandboxMetadata, SandboxStatus>;
using SandboxStore = ObjectStore<SandboxMetadata, SandboxStatus>;

// ListPodSandbox's filter; unset fields match everything.
struct SandboxFilter {
  std::string id_prefix;
  std::optional<SandboxState> state;
  std::map<std::string, std::string> label_selector;  // every pair must match
};

bool SandboxMatches(const Sandbox& sandbox, const SandboxFilter& filter);

// The unique name kubelet's metadata maps to.
std::string SandboxName(const std::string& name, const std::string& ns, const std::string& uid,
                        uint32_t attempt);

}  // namespace podvisor
