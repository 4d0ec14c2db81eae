#pragma once

// Builds the OCI runtime config.json (runtime-spec 1.0) for crun from a ContainerSpec, and the
// process.json of an exec.

#include <string>

#include "agent/result.h"
#include "agent/v1/agent.pb.h"

namespace podvisor::agent {

struct OciOptions {
  std::string container_id;
  std::string rootfs_path;     // absolute
  std::string cgroups_path;    // "/podvisor/<id>"
  bool device_cgroup = true;   // deny-all device rules (off in --no-pid1 tests: needs eBPF)
  // The pod's /dev/shm, bound into every container: they share the VM's IPC namespace, so they
  // share its POSIX shared memory too (as containerd gives a pod one /dev/shm). Empty: a
  // private tmpfs per container (--no-pid1 tests).
  std::string pod_shm;
};

// Checks the parts the agent interprets (paths, ids, args); crun checks the rest.
Error ValidateContainerSpec(const v1::ContainerSpec& spec);
Error ValidateProcess(const v1::Process& process);

// Resolves a username against <rootfs>/etc/passwd when the uid is not given (no uid and no name:
// root), takes the primary gid from the user's passwd entry when `gid_from_passwd`, and adds the
// groups <rootfs>/etc/group lists the user (by name) as a member of to its supplementary groups.
Error ResolveUser(const std::string& rootfs, v1::User* user);

Error BuildConfigJson(const v1::ContainerSpec& spec, const OciOptions& options,
                      std::string* json);
Error BuildProcessJson(const v1::Process& process, bool privileged, std::string* json);

// The OCI `linux.resources` object of an update (what `crun update --resources` reads): only the
// limits that are set, and never device rules (an update must not replace the device program
// the container was created with). INVALID_ARGUMENT for a unified key that is not a plain cgroup
// file name.
Error BuildResourcesUpdateJson(const v1::LinuxResources& resources, std::string* json);

}  // namespace podvisor::agent
