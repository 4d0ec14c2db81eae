#include "pod-sandbox/container_spec.h"

#include <signal.h>

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/image_volume.h"
#include "common/status_util.h"
#include "pod-sandbox/seccomp.h"

namespace podvisor {
namespace {

const char* const kDefaultCaps[] = {
    "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
    "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
    "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
    "CAP_KILL",    "CAP_AUDIT_WRITE"};

const char* const kAllCaps[] = {"CAP_CHOWN",
                                "CAP_DAC_OVERRIDE",
                                "CAP_DAC_READ_SEARCH",
                                "CAP_FOWNER",
                                "CAP_FSETID",
                                "CAP_KILL",
                                "CAP_SETGID",
                                "CAP_SETUID",
                                "CAP_SETPCAP",
                                "CAP_LINUX_IMMUTABLE",
                                "CAP_NET_BIND_SERVICE",
                                "CAP_NET_BROADCAST",
                                "CAP_NET_ADMIN",
                                "CAP_NET_RAW",
                                "CAP_IPC_LOCK",
                                "CAP_IPC_OWNER",
                                "CAP_SYS_MODULE",
                                "CAP_SYS_RAWIO",
                                "CAP_SYS_CHROOT",
                                "CAP_SYS_PTRACE",
                                "CAP_SYS_PACCT",
                                "CAP_SYS_ADMIN",
                                "CAP_SYS_BOOT",
                                "CAP_SYS_NICE",
                                "CAP_SYS_RESOURCE",
                                "CAP_SYS_TIME",
                                "CAP_SYS_TTY_CONFIG",
                                "CAP_MKNOD",
                                "CAP_LEASE",
                                "CAP_AUDIT_WRITE",
                                "CAP_AUDIT_CONTROL",
                                "CAP_SETFCAP",
                                "CAP_MAC_OVERRIDE",
                                "CAP_MAC_ADMIN",
                                "CAP_SYSLOG",
                                "CAP_WAKE_ALARM",
                                "CAP_BLOCK_SUSPEND",
                                "CAP_AUDIT_READ",
                                "CAP_PERFMON",
                                "CAP_BPF",
                                "CAP_CHECKPOINT_RESTORE"};

const char* const kDefaultMaskedPaths[] = {
    "/proc/acpi",          "/proc/asound",     "/proc/kcore",       "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi",          "/sys/firmware"};
const char* const kDefaultReadonlyPaths[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                             "/proc/sysrq-trigger"};

// Files the agent writes in the guest for the whole pod; kubelet's mounts of its own copies map
// to these.
const char* const kGuestPodFiles[] = {"/etc/hosts", "/etc/resolv.conf", "/etc/hostname"};

std::string CapName(const std::string& cap) {
  std::string upper = absl::AsciiStrToUpper(cap);
  if (upper == "ALL" || absl::StartsWith(upper, "CAP_")) return upper;
  return absl::StrCat("CAP_", upper);
}

}  // namespace

const std::vector<std::string>& AllCapabilities() {
  static const std::vector<std::string> all(std::begin(kAllCaps), std::end(kAllCaps));
  return all;
}

bool IsGuestPodFile(const std::string& container_path) {
  return std::any_of(std::begin(kGuestPodFiles), std::end(kGuestPodFiles),
                     [&](const char* f) { return container_path == f; });
}

// An image's StopSignal ("SIGQUIT", "QUIT", "3"); SIGTERM when absent or unknown.
int ParseSignal(const std::string& name) {
  static const std::pair<const char*, int> kSignals[] = {
      {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"KILL", SIGKILL},
      {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"WINCH", SIGWINCH},
      {"STOP", SIGSTOP}, {"PWR", SIGPWR}};
  int n = 0;
  if (absl::SimpleAtoi(name, &n) && n > 0 && n < 65) return n;
  std::string upper = absl::AsciiStrToUpper(name);
  if (absl::StartsWith(upper, "SIG")) upper = upper.substr(3);
  for (const auto& [sig_name, number] : kSignals) {
    if (upper == sig_name) return number;
  }
  if (absl::StartsWith(upper, "RTMIN+") && absl::SimpleAtoi(upper.substr(6), &n)) {
    return SIGRTMIN + n;
  }
  return SIGTERM;
}

int StopSignalOf(const ContainerConfig& config, const ImageMetadata& image) {
  return config.stop_signal > 0 ? config.stop_signal : ParseSignal(image.config.stop_signal);
}

// Asks the agent to mount a disk just hot-plugged. The guest may list the disk (its serial in
// sysfs) a moment before the block device can be opened (mount: ENXIO), so a failure is retried

ProcessSpec BuildProcess(const ContainerConfig& config, const ImageMetadata& image) {
  ProcessSpec p;
  if (!config.command.empty()) {
    p.args = config.command;
    p.args.insert(p.args.end(), config.args.begin(), config.args.end());
  } else {
    p.args = image.config.entrypoint;
    const std::vector<std::string>& rest = config.args.empty() ? image.config.cmd : config.args;
    p.args.insert(p.args.end(), rest.begin(), rest.end());
  }
  p.env = image.config.env;
  for (const auto& [key, value] : config.envs) {
    std::string entry = absl::StrCat(key, "=", value);
    auto it = std::find_if(p.env.begin(), p.env.end(), [&](const std::string& e) {
      return absl::StartsWith(e, absl::StrCat(key, "="));
    });
    if (it != p.env.end()) {
      *it = entry;
    } else {
      p.env.push_back(entry);
    }
  }
  p.cwd = !config.working_dir.empty()         ? config.working_dir
          : !image.config.working_dir.empty() ? image.config.working_dir
                                              : "/";
  // User: the CRI security context over the image's User ("uid", "name", "uid:gid").
  std::string image_group;
  if (size_t colon = image.config.user.find(':'); colon != std::string::npos) {
    image_group = image.config.user.substr(colon + 1);
  }
  if (config.run_as_user) {
    p.user.uid = static_cast<uint32_t>(*config.run_as_user);
  } else if (!config.run_as_username.empty()) {
    p.user.username = config.run_as_username;
  } else if (image.uid >= 0) {
    p.user.uid = static_cast<uint32_t>(image.uid);
  } else if (!image.username.empty()) {
    p.user.username = image.username;
  } else {
    p.user.uid = 0;
  }
  uint32_t gid = 0;
  if (config.run_as_group) {
    p.user.gid = static_cast<uint32_t>(*config.run_as_group);
  } else if (!config.run_as_user && config.run_as_username.empty() &&
             absl::SimpleAtoi(image_group, &gid)) {
    p.user.gid = gid;
  } else {
    p.user.gid_from_passwd = true;  // the user's primary group, as containerd and runc give it
  }
  for (int64_t g : config.supplemental_groups) {
    p.user.additional_gids.push_back(static_cast<uint32_t>(g));
  }
  p.user.strict_groups = config.supplemental_groups_policy == SupplementalGroupsPolicy::kStrict;
  p.terminal = config.tty;
  p.no_new_privileges = config.no_new_privs;
  return p;
}

ProcessSpec ExecProcess(const ContainerMetadata& meta) {
  ProcessSpec p;
  p.env = meta.env;
  p.cwd = meta.cwd.empty() ? "/" : meta.cwd;
  p.user.uid = meta.uid;
  p.user.gid = meta.gid;
  p.user.username = meta.username;
  // Records from before the resolved choice was kept: a gid of 0 not asked for was most likely
  // the passwd's to choose.
  p.user.gid_from_passwd =
      meta.gid_from_passwd.value_or(!meta.config.run_as_group && meta.gid == 0);
  for (int64_t g : meta.config.supplemental_groups) {
    p.user.additional_gids.push_back(static_cast<uint32_t>(g));
  }
  p.user.strict_groups =
      meta.config.supplemental_groups_policy == SupplementalGroupsPolicy::kStrict;
  p.no_new_privileges = meta.config.no_new_privs;
  if (!meta.config.privileged) p.capabilities = BuildCapabilities(meta.config);
  return p;
}

ContainerResources ToGuestResources(const ContainerLimits& r) {
  ContainerResources out;
  out.cpu_shares = r.cpu_shares > 0 ? static_cast<uint64_t>(r.cpu_shares) : 0;
  out.cpu_quota = r.cpu_quota;
  out.cpu_period = r.cpu_period > 0 ? static_cast<uint64_t>(r.cpu_period) : 0;
  out.cpuset_cpus = r.cpuset_cpus;
  out.cpuset_mems = r.cpuset_mems;
  out.memory_limit_bytes = r.memory_limit_bytes;
  out.memory_swap_limit_bytes = r.memory_swap_limit_bytes;
  out.hugepage_limits = r.hugepage_limits;
  out.unified = r.unified;
  if (r.oom_score_adj != 0) out.oom_score_adj = static_cast<int32_t>(r.oom_score_adj);
  return out;
}

absl::Status ValidateContainerConfig(const ContainerConfig& config) {
  if (config.name.empty()) return absl::InvalidArgumentError("container name is required");
  if (config.image.empty()) return absl::InvalidArgumentError("image is required");
  if (absl::Status s = ValidateLimits(config.resources); !s.ok()) {
    return WithContext(s, "create container: resources");
  }
  if (config.run_as_group && !config.run_as_user && config.run_as_username.empty()) {
    // A group for the image's user would silently pair with whatever user the image names.
    return absl::InvalidArgumentError(
        "security_context.run_as_group is set without run_as_user or run_as_username");
  }
  return absl::OkStatus();
}

std::vector<std::string> BuildCapabilities(const ContainerConfig& config,
                                           const std::vector<std::string>& all) {
  std::set<std::string> caps(std::begin(kDefaultCaps), std::end(kDefaultCaps));
  for (const std::string& c : config.cap_add) {
    std::string name = CapName(c);
    if (name == "ALL") {
      caps.insert(all.begin(), all.end());
    } else {
      caps.insert(name);
    }
  }
  for (const std::string& c : config.cap_drop) {
    std::string name = CapName(c);
    if (name == "ALL") {
      caps.clear();
    } else {
      caps.erase(name);
    }
  }
  // An explicit add wins over "drop ALL", as in containerd.
  bool dropped_all = std::any_of(config.cap_drop.begin(), config.cap_drop.end(),
                                 [](const std::string& c) { return CapName(c) == "ALL"; });
  if (dropped_all) {
    for (const std::string& c : config.cap_add) {
      if (CapName(c) != "ALL") caps.insert(CapName(c));
    }
  }
  return std::vector<std::string>(caps.begin(), caps.end());
}

absl::StatusOr<ImageVolumeSource> ResolveImageVolume(const ImageController& images,
                                                     const ContainerMount& mount) {
  const std::string what = absl::StrCat("image volume ", mount.image, " at ", mount.container_path);
  absl::StatusOr<ImageRecord> image = images.Get(mount.image);
  if (!image.ok()) {
    if (absl::IsNotFound(image.status())) {
      return absl::NotFoundError(absl::StrCat(what, ": the image is not pulled"));
    }
    return WithContext(image.status(), what);
  }
  absl::StatusOr<std::vector<std::string>> paths = images.LayerImages(image->metadata.id);
  if (!paths.ok()) return WithContext(paths.status(), what);
  if (paths->empty()) {
    return absl::FailedPreconditionError(absl::StrCat(what, ": the image has no layers"));
  }
  if (paths->size() > agent::kMaxImageVolumeLayers) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": the image has ", paths->size(),
                                                   " layers, more than the ",
                                                   agent::kMaxImageVolumeLayers, " allowed"));
  }
  return ImageVolumeSource{*std::move(image), *std::move(paths)};
}

absl::StatusOr<ContainerSpec> BuildContainerSpec(const Sandbox& sandbox, const ImageRecord& image,
                                                 const ContainerConfig& config,
                                                 const std::vector<LayerDisk>& layers,
                                                 const std::vector<VolumeDisk>& volumes,
                                                 const std::vector<SharedVolume>& shared,
                                                 const std::vector<ImageVolumeRecord>& images) {
  if (config.userns_given && config.user_namespace != sandbox.metadata.user_namespace) {
    return absl::InvalidArgumentError(
        "namespace_options.userns_options: a container joins its pod's user namespace, and this "
        "one asks for another (a different mode or different mappings)");
  }
  ContainerSpec spec;
  spec.process = BuildProcess(config, image.metadata);
  if (spec.process.args.empty()) {
    return absl::InvalidArgumentError(
        "no command: neither the container config nor the image says what to run");
  }
  if (!config.privileged) {
    spec.process.capabilities = BuildCapabilities(config);
    const std::set<std::string> caps(spec.process.capabilities.begin(),
                                     spec.process.capabilities.end());
    absl::StatusOr<std::string> seccomp = SeccompProfileJson(config.seccomp, caps);
    if (!seccomp.ok()) return seccomp.status();
    spec.seccomp_oci_json = *seccomp;
  }
  std::vector<std::string> lowers;
  for (auto it = layers.rbegin(); it != layers.rend(); ++it) {
    lowers.push_back(absl::StrCat(kLayerMountDir, it->serial));
  }
  if (lowers.empty()) return absl::FailedPreconditionError("the image has no layers");
  spec.rootfs_mount = GuestMount{
      "/", "overlay", "overlay", {absl::StrCat("lowerdir=", absl::StrJoin(lowers, ":"))}};
  spec.readonly_rootfs = config.readonly_rootfs;
  for (const ContainerMount& m : config.mounts) {
    if (!m.image.empty()) {
      auto image_volume = std::find_if(
          images.begin(), images.end(),
          [&](const ImageVolumeRecord& v) { return v.container_path == m.container_path; });
      if (image_volume == images.end() || image_volume->layers.empty()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "image volume ", m.image, " at ", m.container_path, " has no layers attached"));
      }
      GuestImageVolume g;
      for (auto it = image_volume->layers.rbegin(); it != image_volume->layers.rend(); ++it) {
        g.lower_dirs.push_back(absl::StrCat(kLayerMountDir, it->serial));
      }
      g.sub_path = image_volume->sub_path;
      spec.mounts.push_back(GuestMount{m.container_path,
                                       "bind",
                                       absl::StrCat("image-volume:", spec.image_volumes.size()),
                                       {"rbind", "ro"}});
      spec.image_volumes.push_back(std::move(g));
      continue;
    }
    if (IsGuestPodFile(m.container_path)) {
      spec.mounts.push_back(GuestMount{m.container_path,
                                       "bind",
                                       m.container_path,
                                       {"rbind", "rprivate", m.readonly ? "ro" : "rw"}});
      continue;
    }
    auto shared_volume = std::find_if(shared.begin(), shared.end(), [&](const SharedVolume& v) {
      return v.container_path == m.container_path && v.host_path == m.host_path;
    });
    if (shared_volume != shared.end()) {
      // Read-only is enforced on the host, where guest root cannot undo it. The guest has no
      // submounts below a shared volume (the host's submounts are inside its one shared
      // filesystem), so its own "ro" would make them read-only too: for plain read-only only the
      // host's top mount is, and the guest binds it as is; recursive read-only is read-only at
      // every depth on the host and the guest's "ro" agrees with it.
      const bool guest_ro = m.recursive_read_only;
      spec.mounts.push_back(GuestMount{m.container_path,
                                       "bind",
                                       absl::StrCat(kGuestSharedDir, "/", shared_volume->name),
                                       {"rbind", "rprivate", guest_ro ? "ro" : "rw"}});
      continue;
    }
    auto volume = std::find_if(volumes.begin(), volumes.end(), [&](const VolumeDisk& v) {
      return v.container_path == m.container_path;
    });
    if (volume != volumes.end()) {
      std::string source = absl::StrCat(kVolumeMountDir, volume->disk.serial);
      if (!volume->file.empty()) absl::StrAppend(&source, "/", volume->file);
      spec.mounts.push_back(GuestMount{m.container_path, "bind", source, {"rbind", "ro"}});
      continue;
    }
    if (m.container_path == "/dev/termination-log") {
      // kubelet's termination message file in a VM without a shared directory: the container
      // writes into its own rootfs instead (the host file stays empty, as with a container that
      // wrote no message).
      continue;
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "writable mount of host path ", m.host_path, " at ", m.container_path,
        " is not supported: this pod VM shares no filesystem with the host "
        "(hypervisor.shared_filesystem is off; read-only mounts are given as snapshots)"));
  }
  // As containerd and CRI-O do, every container sees the pod's hostname, hosts and (when the pod
  // has a DNS config) resolv.conf, unless kubelet mounted its own: the guest's copies, which the
  // agent wrote at sandbox setup.
  for (const char* file : kGuestPodFiles) {
    const bool mounted = std::any_of(spec.mounts.begin(), spec.mounts.end(),
                                     [&](const GuestMount& g) { return g.destination == file; });
    if (mounted) continue;
    if (std::string_view(file) == "/etc/resolv.conf" && !sandbox.metadata.dns) continue;
    spec.mounts.push_back(GuestMount{
        file, "bind", file, {"rbind", "rprivate", config.readonly_rootfs ? "ro" : "rw"}});
  }
  // No hostname in the spec: UTS is the VM's own, shared by the pod.
  if (config.masked_paths.empty()) {
    spec.masked_paths.assign(std::begin(kDefaultMaskedPaths), std::end(kDefaultMaskedPaths));
  } else {
    spec.masked_paths = config.masked_paths;
  }
  if (config.readonly_paths.empty()) {
    spec.readonly_paths.assign(std::begin(kDefaultReadonlyPaths), std::end(kDefaultReadonlyPaths));
  } else {
    spec.readonly_paths = config.readonly_paths;
  }
  spec.resources = ToGuestResources(config.resources);
  spec.privileged = config.privileged;
  spec.share_pid_namespace = config.share_pod_pid;
  spec.user_namespace = sandbox.metadata.user_namespace;
  return spec;
}

}  // namespace podvisor
