#pragma once

// The pod's user namespace in the guest (CRI NamespaceOption.userns_options, mode POD): one
// namespace for every container of the pod, made by the agent with the pod's mappings, and the
// ownership shift that makes a container's root filesystem belong to it.

#include <sys/types.h>

#include <mutex>
#include <string>

#include "agent/result.h"
#include "agent/v1/agent.pb.h"

namespace podvisor::agent {

// One range each for uids and gids, mapping container id 0, of a length of at least 1, whose
// guest ids stay below 2^32 - 1 (the kernel's "no id"). INVALID_ARGUMENT naming what is wrong.
Error ValidateUserNamespace(const v1::UserNamespace& userns);

// The guest id of container id `id` under `m`; `id` itself when the range does not hold it.
uint32_t MapId(const v1::IdMapping& m, uint32_t id);

class PodUserNamespace {
 public:
  // `path`: the file the namespace is bind-mounted on (what crun joins).
  explicit PodUserNamespace(std::string path) : path_(std::move(path)) {}

  // Makes the namespace on the first call; later calls must ask for the same mappings
  // (FAILED_PRECONDITION otherwise: a pod has one user namespace). Thread-safe.
  Error Ensure(const v1::UserNamespace& want);
  const std::string& path() const { return path_; }
  // An mqueue filesystem of the guest's IPC namespace, which the pod's containers share: one in
  // a user namespace cannot mount it (the IPC namespace is not that namespace's), so crun binds
  // this one.
  std::string mqueue() const { return path_ + "-mqueue"; }
  // The pod's PID namespace for containers that share it (CRI pid POD or TARGET), owned by the
  // user namespace (one the VM's agent owns would not let them mount /proc); its PID 1 is a
  // process of the agent's that only reaps.
  std::string pid_path() const { return path_ + "-pid"; }

 private:
  std::mutex mu_;
  const std::string path_;
  bool made_ = false;
  v1::UserNamespace made_with_;
};

// Gives every file of the tree at `root` (one filesystem: mounts below it are left alone; no
// symlink is followed) the guest ids its ids have in the namespace: uid u becomes
// MapId(userns.uids(), u), likewise for gids. Set-user-ID and set-group-ID bits, which chown(2)
// clears, are restored, and a file capability is rewritten for the namespace's root (a v3
// capability, which the kernel honours only inside that namespace). A hard link seen twice is
// shifted once. Meant for a container's overlay before crun runs (with metacopy the upper layer
// gets the new metadata only, not a copy of each file's data).
Error ShiftOwnership(const std::string& root, const v1::UserNamespace& userns,
                     size_t* files_shifted);

}  // namespace podvisor::agent
