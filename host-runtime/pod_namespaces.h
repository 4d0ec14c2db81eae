#pragma once

// The namespaces a host pod's containers share, without a pause container: a tiny holder
// process (a fork of podvisord that never execs, in a session of its own) unshares the pod's IPC,
// UTS and PID namespaces, sets the pod's hostname, and as PID 1 of the pod's PID namespace reaps
// its orphans. The namespaces are bind-mounted (nsfs) at <dir>/<type> for the containers'
// config.json to join; the holder outlives podvisord. The network namespace is the CNI one
// (network/), made apart.

#include <sys/types.h>

#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace podvisor::host {

struct PodNamespaceRequest {
  std::string dir;  // must exist
  bool ipc = false;
  bool uts = false;
  bool pid = false;
  std::string hostname;  // for the new UTS namespace
};

struct PodNamespaces {
  pid_t holder = 0;                          // 0 when no namespace was asked for
  std::map<std::string, std::string> paths;  // "ipc" / "uts" / "pid" -> <dir>/<type>
};

// Starts the holder and bind-mounts its namespaces. Undoes itself on failure.
absl::StatusOr<PodNamespaces> CreatePodNamespaces(const PodNamespaceRequest& request);

// The holder of `dir` while it lives (its pid file names a process whose namespaces are the
// ones bind-mounted there); 0 otherwise.
pid_t LiveHolder(const std::string& dir);

// Kills the holder (every process in the pod's PID namespace goes with it) and unmounts the
// namespace files. Idempotent.
absl::Status ReleasePodNamespaces(const std::string& dir);

}  // namespace podvisor::host
