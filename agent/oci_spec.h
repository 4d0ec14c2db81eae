#pragma once

// Builds the OCI runtime config.json (runtime-spec 1.0) for crun from a ContainerSpec, and the
// process.json of an exec. Shared by the guest agent and the host handler (host-runtime/): both
// run their containers with crun from the same agent-protocol ContainerSpec.

#include <optional>
#include <string>
#include <utility>
#include <vector>

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
  // Host containers (host-runtime/): the namespaces instead of the guest's layout, each a type
  // ("network", "ipc", "uts", "pid", "mount", "cgroup") and a path to join (empty: a new one); a
  // type left out is the host's. Unset: the guest's layout (below).
  std::optional<std::vector<std::pair<std::string, std::string>>> namespaces;
  // What "every capability" means for a privileged container; empty: all the kernel knows. The
  // host handler gives its bounding set (a capability the runtime lacks cannot be granted).
  std::vector<std::string> privileged_capabilities;
  // The pod's user namespace to join (a bind-mounted nsfs file); empty: none of its own. Its
  // containers then bind `pod_mqueue` at /dev/mqueue instead of mounting one.
  std::string user_namespace;
  std::string pod_mqueue;
  // With user_namespace: the pod's PID namespace (a bind-mounted nsfs file) that a container
  // sharing the pod's PID namespace joins instead of the VM's.
  std::string pod_pid_namespace;
  // OCI linux.rootfsPropagation ("rslave", "rshared"); empty: the runtime's default (private).
  std::string rootfs_propagation;
  // The container's seccomp profile compiled already (classic BPF, the kernel's sock_filter
  // array): given to crun as its `run.oci.seccomp_bpf_data` annotation, so that crun loads it
  // instead of compiling the profile again. crun still takes the profile's flags and listener
  // from linux.seccomp. Empty: crun compiles the profile.
  std::string seccomp_bpf;
};

// RFC 4648 base64 with padding (what crun decodes its annotations with).
std::string Base64(const std::string& bytes);

// Checks the parts the agent interprets (paths, ids, args); crun checks the rest.
Error ValidateContainerSpec(const v1::ContainerSpec& spec);
Error ValidateProcess(const v1::Process& process);

// The kernel's number of a capability ("CAP_CHOWN" -> 0, in the kernel's order); -1 for a name
// it does not know. KnownCapabilityCount(): how many names there are.
int CapabilityNumber(const std::string& name);
int KnownCapabilityCount();

// The PATH a container process gets when its env has none (crun's and runc's default).
inline constexpr char kDefaultPath[] =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// NGROUPS_MAX: the most supplementary groups a Linux process can hold.
inline constexpr int kMaxSupplementaryGroups = 65536;

// Resolves a username against <rootfs>/etc/passwd when the uid is not given (no uid and no name:
// root), takes the primary gid from the user's passwd entry when `gid_from_passwd`, adds the
// groups <rootfs>/etc/group lists the user (by name) as a member of to its supplementary groups
// unless `strict_supplemental_groups` (CRI SupplementalGroupsPolicy Strict), and leaves
// `additional_gids` as the process will hold them: the primary gid among them, ascending, each
// once. INVALID_ARGUMENT for a name not in /etc/passwd, or more than kMaxSupplementaryGroups.
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
