#include "pod-sandbox/shared_directory_volumes.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/log.h"
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
  const std::string dir = absl::StrCat(shared_dir, "/", container_id);
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
      if (::stat(m.host_path.c_str(), &st) != 0) {
        return ErrnoStatus(absl::StrCat(what, ": stat"), errno);
      }
    }
    const bool is_dir = S_ISDIR(st.st_mode);
    if (!is_dir && !S_ISREG(st.st_mode)) {
      return absl::InvalidArgumentError(
          absl::StrCat(what,
                       ": only directories and regular files can be shared with a pod VM (sockets, "
                       "devices and fifos of the host cannot be reached from inside it)"));
    }
    if (out.empty()) {
      if (absl::Status s = MakeDirs(dir, 0711); !s.ok()) return WithContext(s, what);
    }
    SharedVolume v;
    v.container_path = m.container_path;
    v.host_path = m.host_path;
    v.name = absl::StrCat(container_id, "/", out.size());
    v.readonly = m.readonly;
    const std::string target = absl::StrCat(shared_dir, "/", v.name);
    if (is_dir) {
      if (::mkdir(target.c_str(), 0755) != 0) return ErrnoStatus("mkdir " + target, errno);
    } else {
      int fd = ::open(target.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
      if (fd < 0) return ErrnoStatus("create " + target, errno);
      ::close(fd);
    }
    out.push_back(v);
    if (::mount(m.host_path.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      return ErrnoStatus(absl::StrCat(what, ": bind mount"), errno);
    }
    // HostToContainer: mounts made later under the host path reach the container (a slave of
    // the host path's peer group when it is shared); private: none do.
    const unsigned long propagation =
        m.propagation == MountPropagation::kHostToContainer ? MS_SLAVE : MS_PRIVATE;
    if (::mount(nullptr, target.c_str(), nullptr, MS_REC | propagation, nullptr) != 0) {
      return ErrnoStatus(absl::StrCat(what, ": set propagation"), errno);
    }
    if (m.readonly &&
        ::mount(nullptr, target.c_str(), nullptr,
                MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) != 0) {
      return ErrnoStatus(absl::StrCat(what, ": read-only remount"), errno);
    }
  }
  std::move(undo).Cancel();
  return volumes;
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
