// HostRuntime: a host container's OCI config.json, from the CRI request and the image, through
// the agent's builder (agent/oci_spec.h) with the host's namespaces, mounts and propagation.

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/oci_spec.h"
#include "common/fs.h"
#include "host-runtime/host_runtime.h"
#include "pod-sandbox/agent_wire.h"
#include "pod-sandbox/container_spec.h"
#include "pod-sandbox/seccomp.h"

namespace podvisor {
namespace {

// The defaults the VM handler gives its containers too (containerd's).
const char* const kMaskedPaths[] = {"/proc/acpi",        "/proc/asound",        "/proc/kcore",
                                    "/proc/keys",        "/proc/latency_stats", "/proc/timer_list",
                                    "/proc/timer_stats", "/proc/sched_debug",   "/proc/scsi",
                                    "/sys/firmware"};
const char* const kReadonlyPaths[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                      "/proc/sysrq-trigger"};
const char* const kPodFiles[] = {"/etc/hosts", "/etc/resolv.conf", "/etc/hostname"};

// The propagation of the mount (from /proc/self/mountinfo) that holds `path`: "shared",
// "slave" or "private".
std::string PropagationOf(const std::string& path) {
  absl::StatusOr<std::string> info = ReadFile("/proc/self/mountinfo");
  if (!info.ok()) return "private";
  size_t best = 0;
  std::string result = "private";
  for (absl::string_view line : absl::StrSplit(*info, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    if (f.size() < 7) continue;
    const std::string mp(f[4]);
    const bool covers =
        path == mp || mp == "/" ||
        (path.size() > mp.size() && path.compare(0, mp.size(), mp) == 0 && path[mp.size()] == '/');
    if (!covers || mp.size() < best) continue;
    best = mp.size();
    result = "private";
    for (size_t i = 6; i < f.size() && f[i] != "-"; ++i) {
      if (absl::StartsWith(f[i], "shared:")) result = "shared";
      if (absl::StartsWith(f[i], "master:") && result != "shared") result = "slave";
    }
  }
  return result;
}

// The OCI mount of a CRI host-path mount, and the rootfs propagation it needs (as containerd
// sets them): FAILED_PRECONDITION when the host side cannot propagate as asked.
absl::StatusOr<GuestMount> HostMount(const ContainerMount& m, std::string* rootfs_propagation) {
  GuestMount g{m.container_path, "bind", m.host_path, {"rbind"}};
  switch (m.propagation) {
    case MountPropagation::kPrivate:
      g.options.push_back("rprivate");
      break;
    case MountPropagation::kHostToContainer: {
      const std::string p = PropagationOf(m.host_path);
      if (p == "private") {
        return absl::FailedPreconditionError(
            absl::StrCat("mount ", m.host_path,
                         " with HostToContainer propagation: its host mount is private "
                         "(make it shared or slave: mount --make-rshared)"));
      }
      g.options.push_back("rslave");
      if (*rootfs_propagation != "rshared") *rootfs_propagation = "rslave";
      break;
    }
    case MountPropagation::kBidirectional:
      if (PropagationOf(m.host_path) != "shared") {
        return absl::FailedPreconditionError(
            absl::StrCat("mount ", m.host_path,
                         " with Bidirectional propagation: its host mount is not "
                         "shared (mount --make-rshared)"));
      }
      g.options.push_back("rshared");
      *rootfs_propagation = "rshared";
      break;
  }
  g.options.push_back(m.readonly ? "ro" : "rw");
  // An image volume: as its staged mount is, so that a remount to read-only keeps them.
  if (!m.image.empty()) g.options.insert(g.options.end(), {"nosuid", "nodev"});
  return g;
}

}  // namespace

const std::vector<std::string>& BoundingCapabilities() {
  // Read once: nothing in podvisord changes its bounding set (it can only ever shrink).
  static const std::vector<std::string> caps = [] {
    const std::vector<std::string>& names = AllCapabilities();
    uint64_t bounding = ~uint64_t{0};
    absl::StatusOr<std::string> status = ReadFile("/proc/self/status");
    if (status.ok()) {
      size_t at = status->find("CapBnd:\t");
      if (at != std::string::npos) {
        bounding = std::strtoull(status->c_str() + at + 8, nullptr, 16);
      }
    }
    std::vector<std::string> out;
    for (size_t i = 0; i < names.size() && i < 64; ++i) {
      if (bounding & (uint64_t{1} << i)) out.push_back(names[i]);
    }
    return out;
  }();
  return caps;
}

absl::StatusOr<std::vector<std::string>> HostCapabilities(const ContainerConfig& config) {
  const std::vector<std::string>& bounding = BoundingCapabilities();
  const std::set<std::string> node(bounding.begin(), bounding.end());
  // ALL is every capability the node can give; anything else outside the bounding set is named
  // by the config (or a default), and crun's capset would fail on it without saying which.
  std::vector<std::string> caps = BuildCapabilities(config, bounding);
  for (const std::string& c : caps) {
    if (!node.contains(c)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "capability ", c, " is not in podvisord's bounding set: no host container can have it"));
    }
  }
  return caps;
}

std::string HostRuntime::CgroupsPath(const Sandbox& sandbox, const std::string& id) const {
  std::string parent = sandbox.metadata.cgroup_parent;
  if (parent.empty()) parent = absl::StrCat("/podvisor-host/", sandbox.metadata.id.substr(0, 16));
  if (parent[0] != '/') parent = "/" + parent;
  while (parent.size() > 1 && parent.back() == '/') parent.pop_back();
  return absl::StrCat(parent, "/", id);
}

absl::StatusOr<std::string> HostRuntime::BuildConfig(const Sandbox& sandbox,
                                                     const ContainerMetadata& meta,
                                                     const ImageRecord& image,
                                                     const std::string& rootfs,
                                                     ProcessSpec* resolved) const {
  const ContainerConfig& config = meta.config;
  const SandboxMetadata& sm = sandbox.metadata;
  if (config.user_namespace) {
    return absl::InvalidArgumentError(
        "namespace_options.userns_options mode POD: the host handler does not support user "
        "namespaces");
  }
  ContainerSpec spec;
  spec.process = BuildProcess(config, image.metadata);
  if (spec.process.args.empty()) {
    return absl::InvalidArgumentError(
        "no command: neither the container config nor the image says what to run");
  }
  if (!config.privileged) {
    absl::StatusOr<std::vector<std::string>> caps_given = HostCapabilities(config);
    if (!caps_given.ok()) return caps_given.status();
    spec.process.capabilities = std::move(*caps_given);
    const std::set<std::string> caps(spec.process.capabilities.begin(),
                                     spec.process.capabilities.end());
    absl::StatusOr<std::string> seccomp = SeccompProfileJson(config.seccomp, caps);
    if (!seccomp.ok()) return seccomp.status();
    spec.seccomp_oci_json = *seccomp;
  } else if (!sm.privileged) {
    return absl::InvalidArgumentError(
        "privileged container in a pod sandbox that is not privileged "
        "(linux.security_context.privileged of the pod)");
  }
  spec.process.no_new_privileges = config.no_new_privs;
  spec.readonly_rootfs = config.readonly_rootfs;
  std::string propagation;
  std::set<std::string> mounted;
  for (const ContainerMount& m : config.mounts) {
    absl::StatusOr<GuestMount> g = HostMount(m, &propagation);
    if (!g.ok()) return g.status();
    spec.mounts.push_back(*g);
    mounted.insert(m.container_path);
  }
  for (const char* file : kPodFiles) {
    if (mounted.contains(file)) continue;
    const std::string name = std::string(file).substr(5);  // "hosts", "resolv.conf", ...
    spec.mounts.push_back(GuestMount{file,
                                     "bind",
                                     absl::StrCat(sm.state_dir, "/", name),
                                     {"rbind", "rprivate", config.readonly_rootfs ? "ro" : "rw"}});
  }
  if (!config.privileged) {
    spec.masked_paths = config.masked_paths;
    if (spec.masked_paths.empty())
      spec.masked_paths.assign(std::begin(kMaskedPaths), std::end(kMaskedPaths));
    spec.readonly_paths = config.readonly_paths;
    if (spec.readonly_paths.empty()) {
      spec.readonly_paths.assign(std::begin(kReadonlyPaths), std::end(kReadonlyPaths));
    }
  }
  spec.sysctls = sm.sysctls;
  spec.resources = ToGuestResources(config.resources);
  spec.privileged = config.privileged;
  spec.share_pid_namespace = config.share_pod_pid;

  agent::v1::ContainerSpec wire;
  ToWireContainerSpec(spec, &wire);
  if (agent::Error e = agent::ResolveUser(rootfs, wire.mutable_process()->mutable_user());
      !e.ok()) {
    return absl::InvalidArgumentError(e.message());
  }
  const agent::v1::User& u = wire.process().user();
  resolved->args = spec.process.args;
  resolved->env = spec.process.env;
  resolved->cwd = spec.process.cwd;
  resolved->user.uid = u.uid();
  resolved->user.gid = u.gid();
  resolved->user.additional_gids.assign(u.additional_gids().begin(), u.additional_gids().end());
  resolved->capabilities = spec.process.capabilities;
  resolved->no_new_privileges = spec.process.no_new_privileges;

  agent::OciOptions o;
  o.container_id = meta.id;
  o.rootfs_path = rootfs;
  o.cgroups_path = CgroupsPath(sandbox, meta.id);
  o.device_cgroup = !config.privileged;
  o.rootfs_propagation = propagation;
  if (config.privileged) o.privileged_capabilities = BoundingCapabilities();
  std::vector<std::pair<std::string, std::string>> ns = {{"mount", ""}, {"cgroup", ""}};
  if (sm.network_mode != NamespaceMode::kNode && network_) {
    ns.push_back({"network", network_->NetnsPath(sm.id)});
    ns.push_back({"uts", sm.state_dir + "/uts"});
  }
  if (sm.ipc_mode != NamespaceMode::kNode) {
    ns.push_back({"ipc", sm.state_dir + "/ipc"});
    o.pod_shm = sm.state_dir + "/shm";
  } else {
    o.pod_shm = "/dev/shm";
  }
  // NODE: the node's PID namespace; CONTAINER: one of its own, whatever the pod's; POD: the
  // pod's, which is the node's in a hostPID pod.
  if (config.node_pid) {
    // no entry: the node's
  } else if (!config.share_pod_pid) {
    ns.push_back({"pid", ""});
  } else if (sm.pid_mode != NamespaceMode::kNode) {
    ns.push_back({"pid", sm.state_dir + "/pid"});
  }
  o.namespaces = std::move(ns);
  std::string json;
  if (agent::Error e = agent::BuildConfigJson(wire, o, &json); !e.ok()) {
    return absl::InvalidArgumentError(e.message());
  }
  return json;
}

}  // namespace podvisor
