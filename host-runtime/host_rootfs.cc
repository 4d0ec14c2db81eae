#include "host-runtime/host_rootfs.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs.h"
#include "common/safe_path.h"
#include "common/status_util.h"

namespace podvisor::host {
namespace {

// A read-only loop device over `image` that goes away with its last unmount.
absl::StatusOr<std::string> AttachLoop(const std::string& image) {
  int ctl = ::open("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (ctl < 0) return ErrnoStatus("open /dev/loop-control", errno);
  absl::Cleanup close_ctl = [&] { ::close(ctl); };
  int file = ::open(image.c_str(), O_RDONLY | O_CLOEXEC);
  if (file < 0) return ErrnoStatus(absl::StrCat("open ", image), errno);
  absl::Cleanup close_file = [&] { ::close(file); };
  for (int attempt = 0; attempt < 8; ++attempt) {
    int n = ::ioctl(ctl, LOOP_CTL_GET_FREE);
    if (n < 0) return ErrnoStatus("get a free loop device", errno);
    const std::string dev = absl::StrCat("/dev/loop", n);
    int loop = ::open(dev.c_str(), O_RDONLY | O_CLOEXEC);
    if (loop < 0) return ErrnoStatus(absl::StrCat("open ", dev), errno);
    loop_config config{};
    config.fd = static_cast<uint32_t>(file);
    config.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
    int rc = ::ioctl(loop, LOOP_CONFIGURE, &config);
    int err = errno;
    ::close(loop);
    if (rc == 0) return dev;
    if (err != EBUSY) return ErrnoStatus(absl::StrCat("configure ", dev), err);
  }
  return absl::UnavailableError("no free loop device");
}

}  // namespace

absl::Status MountErofs(const std::string& image, const std::string& target) {
  if (::mount(image.c_str(), target.c_str(), "erofs", MS_RDONLY | MS_NODEV, nullptr) == 0) {
    return absl::OkStatus();
  }
  // Kernels before 6.12 mount erofs from block devices only.
  absl::StatusOr<std::string> dev = AttachLoop(image);
  if (!dev.ok()) return dev.status();
  if (::mount(dev->c_str(), target.c_str(), "erofs", MS_RDONLY | MS_NODEV, nullptr) != 0) {
    return ErrnoStatus(absl::StrCat("mount ", image, " (", *dev, ") at ", target), errno);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> MountRootfs(const std::string& dir,
                                        const std::vector<std::string>& layer_images) {
  if (layer_images.empty()) return absl::FailedPreconditionError("the image has no layers");
  absl::Cleanup undo = [dir] { (void)UnmountRootfs(dir); };
  std::vector<std::string> lowers;  // top first, as overlayfs reads lowerdir
  for (size_t i = 0; i < layer_images.size(); ++i) {
    const std::string target = absl::StrCat(dir, "/layers/", i);
    if (absl::Status s = MakeDirs(target, 0700); !s.ok()) return s;
    if (absl::Status s = MountErofs(layer_images[i], target); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("layer ", layer_images[i], ": ", s.message()));
    }
    lowers.insert(lowers.begin(), target);
  }
  const std::string upper = dir + "/upper", work = dir + "/work", rootfs = dir + "/rootfs";
  for (const std::string& d : {upper, work, rootfs}) {
    if (absl::Status s = MakeDirs(d, 0755); !s.ok()) return s;
  }
  const std::string options =
      absl::StrCat("lowerdir=", absl::StrJoin(lowers, ":"), ",upperdir=", upper, ",workdir=", work);
  if (options.size() >= 4096) {
    return absl::InvalidArgumentError(absl::StrCat("the image has too many layers (",
                                                   layer_images.size(),
                                                   ") for one overlay mount under ", dir));
  }
  if (::mount("overlay", rootfs.c_str(), "overlay", MS_NODEV, options.c_str()) != 0) {
    return ErrnoStatus(absl::StrCat("mount overlay at ", rootfs), errno);
  }
  std::move(undo).Cancel();
  return rootfs;
}

absl::StatusOr<std::string> StageRecursiveReadOnly(const std::string& dir, size_t index,
                                                   const std::string& host_path) {
  const std::string parent = dir + "/rro";
  if (absl::Status s = MakeDirs(parent, 0700); !s.ok()) return s;
  absl::StatusOr<UniqueFd> parent_fd = OpenTrustedDir(parent);
  if (!parent_fd.ok()) return parent_fd.status();
  struct stat st;
  if (::stat(host_path.c_str(), &st) != 0) return ErrnoStatus("stat " + host_path, errno);
  absl::StatusOr<UniqueFd> tree = CloneMountTree(host_path, true);
  if (!tree.ok()) return WithContext(tree.status(), "clone " + host_path);
  MountAttributes every_depth;
  every_depth.set = MOUNT_ATTR_RDONLY;
  every_depth.propagation = MS_PRIVATE;
  if (absl::Status s = SetMountAttributes(tree->get(), every_depth, true); !s.ok()) {
    return WithContext(s, "read-only at every depth: " + host_path);
  }
  const std::string name = std::to_string(index);
  absl::StatusOr<UniqueFd> target = S_ISDIR(st.st_mode) ? MakeDirAt(parent_fd->get(), name, 0700)
                                                        : MakeFileAt(parent_fd->get(), name, 0600);
  if (!target.ok()) return target.status();
  if (absl::Status s = MoveMountTo(tree->get(), target->get()); !s.ok()) {
    return WithContext(s, "attach the read-only copy of " + host_path);
  }
  return parent + "/" + name;
}

absl::Status DetachRecursiveReadOnly(const std::string& dir) {
  return UnmountAllUnder(dir + "/rro");
}

absl::Status UnmountRootfs(const std::string& dir) {
  absl::StatusOr<std::vector<std::string>> mounts = MountPointsUnder(dir);
  if (!mounts.ok()) return mounts.status();
  // Deepest first: the overlay (and anything below it) before the layers it stacks.
  std::sort(mounts->begin(), mounts->end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  const std::string rootfs = dir + "/rootfs";
  std::stable_partition(mounts->begin(), mounts->end(), [&](const std::string& m) {
    return m == rootfs || m.rfind(rootfs + "/", 0) == 0;
  });
  for (const std::string& m : *mounts) {
    if (::umount2(m.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
      return ErrnoStatus(absl::StrCat("unmount ", m), errno);
    }
  }
  return absl::OkStatus();
}

}  // namespace podvisor::host
