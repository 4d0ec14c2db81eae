#include "agent/image_volume.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace podvisor::agent {
namespace {

constexpr unsigned long kVolumeFlags = MS_RDONLY | MS_NOSUID | MS_NODEV;

// A bind of `source` at `target`, then made read-only, nosuid and nodev (a bind takes no flags of
// its own until remounted).
Error ReadOnlyBind(const std::string& source, const std::string& target) {
  if (mount(source.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    return ErrnoError("bind " + source + " at " + target, errno);
  }
  if (mount(nullptr, target.c_str(), nullptr, MS_BIND | MS_REMOUNT | kVolumeFlags, nullptr) != 0) {
    const int err = errno;
    umount2(target.c_str(), MNT_DETACH);
    return ErrnoError("make " + target + " read-only", err);
  }
  return Error::Ok();
}

}  // namespace

Error ValidateImageSubPath(const std::string& sub_path) {
  if (sub_path.empty()) return Error::Ok();
  if (sub_path[0] == '/') {
    return Error(Code::kInvalidArgument,
                 "image_sub_path \"" + sub_path + "\" must be relative to the image's root");
  }
  if (sub_path.find('\0') != std::string::npos) {
    return Error(Code::kInvalidArgument, "image_sub_path has a NUL byte");
  }
  size_t start = 0;
  while (start <= sub_path.size()) {
    size_t end = sub_path.find('/', start);
    if (end == std::string::npos) end = sub_path.size();
    if (sub_path.compare(start, end - start, "..") == 0) {
      return Error(Code::kInvalidArgument,
                   "image_sub_path \"" + sub_path + "\" has a \"..\" component");
    }
    start = end + 1;
  }
  return Error::Ok();
}

Error MountImageVolume(const std::vector<std::string>& lower_dirs, const std::string& sub_path,
                       const std::string& dir, std::vector<std::string>* mounts,
                       std::string* source) {
  if (lower_dirs.empty()) return Error(Code::kFailedPrecondition, "the image has no layers");
  if (lower_dirs.size() > kMaxImageVolumeLayers) {
    return Error(Code::kInvalidArgument, "an image volume has " +
                                             std::to_string(lower_dirs.size()) +
                                             " layers, more than the " +
                                             std::to_string(kMaxImageVolumeLayers) + " allowed");
  }
  if (Error e = ValidateImageSubPath(sub_path); !e.ok()) return e;
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoError("mkdir " + dir, errno);
  const std::string root = dir + "/root";
  if (mkdir(root.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoError("mkdir " + root, errno);
  if (lower_dirs.size() == 1) {
    if (Error e = ReadOnlyBind(lower_dirs[0], root); !e.ok()) return e;
  } else {
    // Lower directories only, no upper: overlayfs makes such a mount read-only by itself.
    std::string data = "lowerdir=";
    for (size_t i = 0; i < lower_dirs.size(); ++i) {
      const std::string& l = lower_dirs[i];
      if (l.empty() || l[0] != '/' || l.find_first_of(":,\\") != std::string::npos) {
        return Error(Code::kInvalidArgument, "layer directory \"" + l + "\" cannot be a lowerdir");
      }
      data += (i ? ":" : "") + l;
    }
    if (data.size() >= 4096) {
      return Error(Code::kInvalidArgument, "the layers' directories do not fit one overlay mount");
    }
    if (mount("overlay", root.c_str(), "overlay", kVolumeFlags, data.c_str()) != 0) {
      return ErrnoError("mount the image's layers as an overlay at " + root, errno);
    }
  }
  mounts->push_back(root);
  if (sub_path.empty()) {
    *source = root;
    return Error::Ok();
  }
  const int root_fd = open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) return ErrnoError("open " + root, errno);
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  long fd;
  do {
    fd = syscall(SYS_openat2, root_fd, sub_path.c_str(), &how, sizeof how);
  } while (fd < 0 && (errno == EINTR || errno == EAGAIN));
  const int open_err = errno;
  close(root_fd);
  if (fd < 0) {
    if (open_err == ENOENT || open_err == ENOTDIR) {
      return Error(Code::kNotFound,
                   "image_sub_path \"" + sub_path + "\" does not exist in the image");
    }
    return ErrnoError("open image_sub_path \"" + sub_path + "\"", open_err);
  }
  struct stat st;
  if (fstat(static_cast<int>(fd), &st) != 0) {
    const int err = errno;
    close(static_cast<int>(fd));
    return ErrnoError("stat image_sub_path \"" + sub_path + "\"", err);
  }
  const std::string target = dir + "/sub";
  int made = -1;
  if (S_ISDIR(st.st_mode)) {
    made = mkdir(target.c_str(), 0755) == 0 || errno == EEXIST ? 0 : -1;
  } else if (S_ISREG(st.st_mode)) {
    const int f = open(target.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (f >= 0) close(f);
    made = f >= 0 ? 0 : -1;
  } else {
    close(static_cast<int>(fd));
    return Error(Code::kInvalidArgument,
                 "image_sub_path \"" + sub_path + "\" is neither a directory nor a regular file");
  }
  if (made != 0) {
    const int err = errno;
    close(static_cast<int>(fd));
    return ErrnoError("create " + target, err);
  }
  // The file the walk found, by descriptor: nothing is looked up by name again.
  const Error bound = ReadOnlyBind("/proc/self/fd/" + std::to_string(fd), target);
  close(static_cast<int>(fd));
  if (!bound.ok()) return bound.With("image_sub_path \"" + sub_path + "\"");
  mounts->push_back(target);
  *source = target;
  return Error::Ok();
}

}  // namespace podvisor::agent
