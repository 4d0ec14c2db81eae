#pragma once

// Containers of a pod sandbox, in domain terms: what CreateContainer asked for (immutable
// metadata) and what happened since (status, changed only through ContainerStore::Update).

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/json_optional.h"
#include "nlohmann/json.hpp"
#include "pod-sandbox/seccomp.h"
#include "pod-sandbox/user_namespace.h"
#include "store/object_store.h"

namespace podvisor {

enum class ContainerState { kCreated, kRunning, kExited, kUnknown };
NLOHMANN_JSON_SERIALIZE_ENUM(ContainerState, {{ContainerState::kCreated, "created"},
                                              {ContainerState::kRunning, "running"},
                                              {ContainerState::kExited, "exited"},
                                              {ContainerState::kUnknown, "unknown"}})

// Mount propagation of a host-path mount (CRI MountPropagation). Bidirectional is refused at
// CreateContainer: a mount made inside the VM cannot reach the host.
enum class MountPropagation { kPrivate = 0, kHostToContainer = 1, kBidirectional = 2 };
NLOHMANN_JSON_SERIALIZE_ENUM(MountPropagation,
                             {{MountPropagation::kPrivate, "private"},
                              {MountPropagation::kHostToContainer, "host_to_container"},
                              {MountPropagation::kBidirectional, "bidirectional"}})

// A CRI Mount (host path into the container).
struct ContainerMount {
  std::string container_path;
  std::string host_path;
  bool readonly = false;
  MountPropagation propagation = MountPropagation::kPrivate;
  bool selinux_relabel = false;  // accepted and reported; the guest has no SELinux
  // Read-only at every depth (CRI recursive_read_only; needs readonly and private propagation).
  // Plain readonly makes only the top mount read-only: submounts keep their own flags.
  bool recursive_read_only = false;
  // An image volume (CRI Mount.image): the image as the caller named it (host_path is empty), its
  // layers mounted read-only; image_sub_path: only that part of it.
  std::string image{};
  std::string image_sub_path{};
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ContainerMount, container_path, host_path, readonly,
                                                propagation, selinux_relabel, recursive_read_only,
                                                image, image_sub_path)

// CRI SupplementalGroupsPolicy: where a container's supplementary groups come from. Merge (the
// CRI default): the request's, plus those the image's /etc/group lists the user in; Strict: the
// request's only.
enum class SupplementalGroupsPolicy { kMerge = 0, kStrict = 1 };
NLOHMANN_JSON_SERIALIZE_ENUM(SupplementalGroupsPolicy,
                             {{SupplementalGroupsPolicy::kMerge, "merge"},
                              {SupplementalGroupsPolicy::kStrict, "strict"}})

// The identity a container's init process was given (CRI ContainerStatus.user), as the runtime
// resolved it against the image's /etc/passwd and /etc/group at create: for a VM pod the guest
// agent, for a host pod the host handler.
struct ContainerUser {
  uint32_t uid = 0;
  uint32_t gid = 0;
  // As the process holds them: ascending, each once, the primary gid among them.
  std::vector<uint32_t> supplemental_groups;
  bool operator==(const ContainerUser&) const = default;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ContainerUser, uid, gid, supplemental_groups)

// The CRI LinuxContainerResources of a container. 0 / empty: not set (at update: unchanged);
// -1 as cpu_quota, memory_limit_bytes or memory_swap_limit_bytes: unlimited.
struct ContainerLimits {
  int64_t cpu_period = 0;
  int64_t cpu_quota = 0;
  int64_t cpu_shares = 0;
  int64_t memory_limit_bytes = 0;
  std::string cpuset_cpus;
  std::string cpuset_mems;
  int64_t memory_swap_limit_bytes = 0;              // memory + swap (the guest has no swap)
  int64_t oom_score_adj = 0;                        // of the container's processes in the guest
  std::map<std::string, uint64_t> hugepage_limits;  // page size ("2MB") -> bytes
  std::map<std::string, std::string> unified;       // cgroup v2 file -> value
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ContainerLimits, cpu_period, cpu_quota, cpu_shares,
                                                memory_limit_bytes, cpuset_cpus, cpuset_mems,
                                                memory_swap_limit_bytes, oom_score_adj,
                                                hugepage_limits, unified)

// INVALID_ARGUMENT naming the first value no cgroup would take (or that is absurd: a memory
// limit under 4 MiB, a period outside 1 ms..1 s, an oom_score_adj outside -1000..1000, ...).
absl::Status ValidateLimits(const ContainerLimits& limits);
// `base` with every field that `update` sets replacing it (map entries key by key).
ContainerLimits MergeLimits(const ContainerLimits& base, const ContainerLimits& update);

// What CreateContainer asks for (converted from runtime.v1.ContainerConfig).
struct ContainerConfig {
  std::string name;
  uint32_t attempt = 0;
  std::string image;  // as the caller named it (tag, digest or id)
  std::vector<std::string> command;
  std::vector<std::string> args;
  std::string working_dir;
  std::vector<std::pair<std::string, std::string>> envs;
  std::vector<ContainerMount> mounts;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  std::string log_path;  // relative to the sandbox's log_directory
  bool stdin = false;
  bool stdin_once = false;
  bool tty = false;
  // Security context.
  bool privileged = false;
  bool readonly_rootfs = false;
  bool no_new_privs = false;
  std::vector<std::string> cap_add;
  std::vector<std::string> cap_drop;
  std::vector<std::string> masked_paths;    // empty: the runtime's defaults
  std::vector<std::string> readonly_paths;  // empty: the runtime's defaults
  std::optional<int64_t> run_as_user;
  std::optional<int64_t> run_as_group;
  std::string run_as_username;
  std::vector<int64_t> supplemental_groups;
  SupplementalGroupsPolicy supplemental_groups_policy = SupplementalGroupsPolicy::kMerge;
  SeccompConfig seccomp;  // ignored when privileged
  // namespace_options.pid POD (the CRI zero value) or TARGET: the pod's (the VM's) PID namespace,
  // where the target's processes are visible too; CONTAINER: the container's own.
  bool share_pod_pid = true;
  // namespace_options.pid NODE: the node's PID namespace. Only a host-handler pod can honour it;
  // a pod VM refuses it at CreateContainer.
  bool node_pid = false;
  ContainerLimits resources;
  // ContainerConfig.stop_signal as a Linux number; 0: the image's StopSignal, else SIGTERM.
  int stop_signal = 0;
  // namespace_options.userns_options when the request has it (kubelet sends the pod's): it must
  // be the pod's. A container always joins its pod's user namespace.
  bool userns_given = false;
  std::optional<PodUserNamespace> user_namespace{};
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(
    ContainerConfig, name, attempt, image, command, args, working_dir, envs, mounts, labels,
    annotations, log_path, stdin, stdin_once, tty, privileged, readonly_rootfs, no_new_privs,
    cap_add, cap_drop, masked_paths, readonly_paths, run_as_user, run_as_group, run_as_username,
    supplemental_groups, supplemental_groups_policy, seccomp, share_pod_pid, node_pid, resources,
    stop_signal, userns_given, user_namespace)

// One image layer hot-plugged into the sandbox VM as a read-only disk.
struct LayerDisk {
  std::string serial;  // VmDisk id = SCSI serial
  uint32_t index = 0;  // SCSI target
  std::string path;    // host erofs image
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(LayerDisk, serial, index, path)

// A read-only host volume given to the container as a snapshot: the host directory (or one
// file) packed into an erofs image, hot-plugged like a layer, bound at container_path.
struct VolumeDisk {
  LayerDisk disk;  // path: the erofs image (in the sandbox's state directory)
  std::string container_path;
  std::string file;  // for a file mount: its name inside the image; empty for a directory
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(VolumeDisk, disk, container_path, file)

// A host path given to the container through its sandbox's shared directory: bind-mounted on the
// host at <sandbox shared_dir>/<name> (read-only there too when the mount is), which the guest
// sees over virtiofs at kGuestSharedDir/<name>, and bound by crun at container_path. Live both
// ways: what either side writes, the other reads.
struct SharedVolume {
  std::string container_path;
  std::string host_path;
  std::string name;  // "<container id>/<n>"
  bool readonly = false;
  bool recursive_read_only = false;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(SharedVolume, container_path, host_path, name,
                                                readonly, recursive_read_only)

// An image mounted into a VM pod's container: its layers are disks of the VM as a rootfs's are
// (shared with any container using the same layers), stacked by the agent.
struct ImageVolumeRecord {
  std::string container_path;
  std::string image_id;  // sha256:<config digest>, held in use while the container is
  std::string sub_path;
  std::vector<LayerDisk> layers;  // lowest first
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ImageVolumeRecord, container_path, image_id,
                                                sub_path, layers)

// What a container was created with; never changes afterwards.
struct ContainerMetadata {
  std::string id;
  // Unique among live containers: "<name>_<pod name>_<pod namespace>_<pod uid>_<attempt>".
  std::string name;
  std::string sandbox_id;
  ContainerConfig config;
  std::string image_id;           // sha256:<config digest>
  std::string image_ref;          // a repo digest of the image when it has one, else image_id
  std::string log_path;           // full path on the host; empty: no log
  std::vector<LayerDisk> layers;  // lowest first
  std::vector<VolumeDisk> volumes;
  std::vector<SharedVolume> shared_volumes;
  std::vector<ImageVolumeRecord> image_volumes;
  int64_t created_at_ns = 0;
  // The process environment exec sessions inherit (env, cwd, user as resolved at create).
  std::vector<std::string> env;
  std::string cwd;
  std::optional<uint32_t> uid;
  uint32_t gid = 0;
  // Whether the agent took the group from the image's /etc/passwd (no group was given, neither by
  // the request nor as the image's "uid:gid"). Unset only in records written before it was kept.
  std::optional<bool> gid_from_passwd;
  std::string username;
  // What the init process was given, learnt at create (see ContainerUser); unset in records of
  // before it was kept, and when an older agent did not report it.
  std::optional<ContainerUser> resolved_user;
  int stop_signal = 15;  // StopContainer's: the config's, else the image's, else SIGTERM
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ContainerMetadata, id, name, sandbox_id, config,
                                                image_id, image_ref, log_path, layers, volumes,
                                                shared_volumes, created_at_ns, env, cwd, uid, gid,
                                                gid_from_passwd, username, resolved_user,
                                                stop_signal, image_volumes)

// Every layer disk a container holds in its VM: its rootfs's, then its image volumes'.
std::vector<LayerDisk> HeldLayers(const ContainerMetadata& meta);
// Whether the container uses the image, as its rootfs or as a volume.
bool UsesImage(const ContainerMetadata& meta, const std::string& image_id);

// What changes over a container's life.
struct ContainerStatus {
  ContainerState state = ContainerState::kCreated;
  int64_t started_at_ns = 0;
  int64_t finished_at_ns = 0;
  int32_t exit_code = 0;
  std::string reason;  // Completed, Error, OOMKilled
  std::string message;
  uint32_t pid = 0;  // in the guest
  ContainerLimits resources;
  // Being created: the record is written before the container exists only so that recovery
  // finds what a crash left. Not listed, no event, until CreateContainer has succeeded.
  bool provisional = false;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ContainerStatus, state, started_at_ns,
                                                finished_at_ns, exit_code, reason, message, pid,
                                                resources, provisional)

using Container = StoredObject<ContainerMetadata, ContainerStatus>;
using ContainerStore = ObjectStore<ContainerMetadata, ContainerStatus>;

// ListContainers' filter; unset fields match everything.
struct ContainerFilter {
  std::string id_prefix;
  std::optional<ContainerState> state;
  std::string sandbox_id_prefix;
  std::map<std::string, std::string> label_selector;
};
bool ContainerMatches(const Container& container, const ContainerFilter& filter);

// The unique name kubelet's metadata maps to.
std::string ContainerName(const std::string& name, const std::string& pod_name,
                          const std::string& pod_namespace, const std::string& pod_uid,
                          uint32_t attempt);

}  // namespace podvisor
