#include "pod-sandbox/shared_directory_volumes.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/safe_path.h"
#include "common/status_util.h"
#include "pod-sandbox/container_spec.h"

namespace podvisor {
namespace {

// Unmounts and removes a container's directory under the sandbox's shared directory.
absl::Status RemoveContainerDir(const std::string& shared_dir, const std::string& container_id) {
  if (shared_dir.empty() || container_id.empty()) return absl::OkStatus();
  // RemoveAll unmounts first and never deletes through a mount: the host data stays.
  return RemoveAll(absl::StrCat(shared_dir, "/", container_id));
}

// Binds `host_path` (a detached copy of its mount tree, `tree`) on `target` with the mount's
// propagation and flags, all set before the copy is attached: there is no moment at which the
// guest sees it writable, suid or with devices. Both ends are descriptors: nothing is resolved in
// the shared directory.
absl::Status BindVolume(const ContainerMount& m, int tree, int target) {
  // Every depth: nosuid and nodev (whatever a guest plants through the share is never honoured
  // on the host), read-only too when recursive. HostToContainer: mounts made later under the
  // host path reach the container (a slave of the host path's peer group when it is shared);
  // private: none do.
  MountAttributes every_depth;
  every_depth.set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  if (m.recursive_read_only) every_depth.set |= MOUNT_ATTR_RDONLY;
  every_depth.propagation =
      m.propagation == MountPropagation::kHostToContainer ? MS_SLAVE : MS_PRIVATE;
  if (absl::Status s = SetMountAttributes(tree, every_depth, true); !s.ok()) {
    return WithContext(s, "nosuid, nodev and propagation");
  }
  if (m.readonly && !m.recursive_read_only) {
    // Non-recursive read-only, as runc does: the top mount only; submounts keep their flags.
    MountAttributes top;
    top.set = MOUNT_ATTR_RDONLY;
    if (absl::Status s = SetMountAttributes(tree, top, false); !s.ok()) {
      return WithContext(s, "read-only");
    }
  }
  return WithContext(MoveMountTo(tree, target), "bind mount");
}

// kubelet's disk-medium emptyDir: <pods dir>/<uid>/volumes/kubernetes.io~empty-dir/<name>.
bool IsKubeletEmptyDir(const std::string& host_path) {
  const size_t at = host_path.rfind("/volumes/kubernetes.io~empty-dir/");
  if (at == std::string::npos) return false;
  const std::string name = host_path.substr(at + sizeof("/volumes/kubernetes.io~empty-dir/") - 1);
  return !name.empty() && name.find('/') == std::string::npos;
}

// Mounts a tmpfs of `max_bytes` on the emptyDir `dir` unless it is a mount already (medium
// Memory, or an earlier container of the pod) or holds data (made before the bound was
// configured: hiding it would lose it). kubelet's teardown finds a tmpfs and unmounts it.
absl::Status BoundEmptyDir(const std::string& dir, uint64_t max_bytes) {
  struct stat st {};
  struct stat parent {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return absl::OkStatus();
  if (::stat((dir + "/..").c_str(), &parent) != 0) return ErrnoStatus("stat " + dir + "/..", errno);
  if (st.st_dev != parent.st_dev) return absl::OkStatus();
  std::error_code ec;
  if (!std::filesystem::is_empty(dir, ec) || ec) {
    PV_LOG(kWarning) << "emptyDir " << dir << " is not empty: left without a size bound";
    return absl::OkStatus();
  }
  const std::string options = absl::StrFormat("size=%u,mode=%o,uid=%u,gid=%u", max_bytes,
                                              st.st_mode & 07777, st.st_uid, st.st_gid);
  if (::mount("podvisor-emptydir", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) !=
      0) {
    return ErrnoStatus("mount a tmpfs of " + std::to_string(max_bytes) + " bytes on " + dir, errno);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ContainerVolumes> SharedDirectoryVolumes::Attach(const Sandbox& sandbox,
                                                                AgentClient& agent,
                                                                const std::string& container_id,
                                                                const ContainerConfig& config) {
  ContainerVolumes volumes;
  std::vector<SharedVolume>& out = volumes.shared;
  const std::string& shared_dir = sandbox.metadata.shared_dir;
  if (shared_dir.empty()) {
    return absl::FailedPreconditionError("the pod VM has no shared directory");
  }
  // Guest root can change anything below the shared directory at any time: from here on every
  // step is relative to a descriptor, and nothing below it is followed or resolved by name.
  UniqueFd shared_fd;
  UniqueFd container_fd;
  auto undo = absl::MakeCleanup([&] { (void)RemoveContainerDir(shared_dir, container_id); });
  for (const ContainerMount& m : config.mounts) {
    if (m.host_path.empty()) continue;
    if (IsGuestPodFile(m.container_path)) continue;
    const std::string what = absl::StrCat("mount of ", m.host_path, " at ", m.container_path);
    if (m.host_path[0] != '/') {
      return absl::InvalidArgumentError(absl::StrCat(what, ": the host path must be absolute"));
    }
    struct stat st {};
    if (::stat(m.host_path.c_str(), &st) != 0) {
      if (errno != ENOENT) return ErrnoStatus(absl::StrCat(what, ": stat"), errno);
      // As containerd does: a missing host path becomes a directory.
      if (absl::Status s = MakeDirs(m.host_path); !s.ok()) return WithContext(s, what);
    }
    if (empty_dir_max_bytes_ > 0 && !m.readonly && IsKubeletEmptyDir(m.host_path)) {
      if (absl::Status s = BoundEmptyDir(m.host_path, empty_dir_max_bytes_); !s.ok()) {
        return WithContext(s, what);
      }
    }
    // The host path is the user's (kubelet's) and resolved as such; what is bound is what was
    // opened here, whatever happens to the path later.
    absl::StatusOr<UniqueFd> tree = CloneMountTree(m.host_path, true);
    if (!tree.ok()) return WithContext(tree.status(), what);
    if (::fstat(tree->get(), &st) != 0) return ErrnoStatus(absl::StrCat(what, ": stat"), errno);
    const bool is_dir = S_ISDIR(st.st_mode);
    if (!is_dir && !S_ISREG(st.st_mode)) {
      return absl::InvalidArgumentError(
          absl::StrCat(what,
                       ": only directories and regular files can be shared with a pod VM (sockets, "
                       "devices and fifos of the host cannot be reached from inside it)"));
    }
    if (!container_fd.valid()) {
      absl::StatusOr<UniqueFd> fd = OpenTrustedDir(shared_dir);
      if (!fd.ok()) return WithContext(fd.status(), what);
      shared_fd = *std::move(fd);
      absl::StatusOr<UniqueFd> made = MakeDirAt(shared_fd.get(), container_id, 0711);
      if (!made.ok()) return WithContext(made.status(), what);
      container_fd = *std::move(made);
    }
    SharedVolume v;
    v.container_path = m.container_path;
    v.host_path = m.host_path;
    const std::string n = absl::StrCat(out.size());
    v.name = absl::StrCat(container_id, "/", n);
    v.readonly = m.readonly;
    v.recursive_read_only = m.recursive_read_only;
    absl::StatusOr<UniqueFd> target =
        is_dir ? MakeDirAt(container_fd.get(), n, 0755) : MakeFileAt(container_fd.get(), n, 0644);
    if (!target.ok()) return WithContext(target.status(), absl::StrCat(what, ": bind target"));
    out.push_back(v);
    if (absl::Status s = BindVolume(m, tree->get(), target->get()); !s.ok()) {
      return WithContext(s, what);
    }
  }
  std::move(undo).Cancel();
  return volumes;
}

absl::Status MountSharedDirectory(const std::string& dir, uint64_t max_bytes) {
  // Inodes bounded too: at most one per 4 KiB of the size (bind targets are empty).
  const std::string options = absl::StrFormat("size=%u,nr_inodes=%u,mode=0700", max_bytes,
                                              std::max<uint64_t>(1024, max_bytes / 4096));
  if (::mount("podvisor-shared", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              options.c_str()) != 0) {
    return ErrnoStatus(
        absl::StrCat("mount the shared directory ", dir, " (a tmpfs of ", max_bytes, " bytes)"),
        errno);
  }
  return absl::OkStatus();
}

void SharedDirectoryVolumes::Detach(const Sandbox& sandbox, AgentClient* agent,
                                    const std::string& container_id,
                                    const ContainerVolumes& volumes) {
  if (volumes.shared.empty()) return;
  if (absl::Status s = RemoveContainerDir(sandbox.metadata.shared_dir, container_id); !s.ok()) {
    PV_LOG(kWarning) << "container " << ShortId(container_id) << ": shared volumes: " << s;
  }
}

}  // namespace podvisor
