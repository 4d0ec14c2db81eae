#pragma once

// A pod's own user namespace, in domain terms: what CRI's userns_options mode POD asks for.

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace podvisor {

// One range of a user namespace's mappings (CRI IDMapping): container ids [container_id,
// container_id + length) are ids [host_id, host_id + length) outside.
struct IdRange {
  uint32_t container_id = 0;
  uint32_t host_id = 0;
  uint32_t length = 0;
  bool operator==(const IdRange&) const = default;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(IdRange, container_id, host_id, length)

// A pod's own user namespace (CRI userns_options mode POD, kubelet's hostUsers: false): one uid
// and one gid range, each mapping container id 0. In a VM pod the ids outside are the guest's.
struct PodUserNamespace {
  IdRange uids;
  IdRange gids;
  bool operator==(const PodUserNamespace&) const = default;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(PodUserNamespace, uids, gids)

// One range: mapping container id 0, of length 1 or more, whose outside ids stay below 2^32 - 1
// (the kernel's "no id"). `what`: "uid" or "gid", for the message.
inline absl::Status ValidatePodUserNamespaceRange(const IdRange& r, const char* what) {
  if (r.container_id != 0) {
    return absl::InvalidArgumentError(absl::StrCat("userns_options: the ", what,
                                                   " mapping must map container id 0 (it maps ",
                                                   r.container_id, ")"));
  }
  if (r.length == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("userns_options: the ", what, " mapping has length 0"));
  }
  if (uint64_t{r.host_id} + r.length > 0xffffffffull) {
    return absl::InvalidArgumentError(absl::StrCat("userns_options: the ", what, " mapping ",
                                                   r.host_id, "+", r.length, " passes 2^32-1"));
  }
  return absl::OkStatus();
}

// Both ranges as above: INVALID_ARGUMENT otherwise, naming what is wrong.
inline absl::Status ValidatePodUserNamespace(const PodUserNamespace& userns) {
  if (absl::Status s = ValidatePodUserNamespaceRange(userns.uids, "uid"); !s.ok()) return s;
  return ValidatePodUserNamespaceRange(userns.gids, "gid");
}

}  // namespace podvisor
