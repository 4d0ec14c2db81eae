#include "common/safe_path.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/status_util.h"

namespace podvisor {

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.Release();
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

int UniqueFd::Release() {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

namespace {

constexpr uint64_t kResolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
// Directories deeper than this below the top of a removal are moved up to the top first: the
// removal holds about two descriptors per level.
constexpr int kMaxRemovalDepth = 16;
// Names read from a directory per pass, and passes per directory (a tree a guest keeps filling
// must not hold the host for ever).
constexpr size_t kNamesPerPass = 256;
constexpr int kMaxPasses = 4096;
// Attempts at one entry that changes under us (a directory swapped for a file, a mount stacked
// on it) before giving up.
constexpr int kMaxEntryAttempts = 64;

// openat2(2), retried on EAGAIN (a concurrent rename during a RESOLVE_BENEATH walk) and EINTR.
int OpenAt2(int dir_fd, const char* path, uint64_t flags, uint64_t mode, uint64_t resolve) {
  struct open_how how {};
  how.flags = flags | O_CLOEXEC;
  how.mode = mode;
  how.resolve = resolve;
  for (int i = 0; i < 128; ++i) {
    const long fd = ::syscall(SYS_openat2, dir_fd, path, &how, sizeof how);
    if (fd >= 0) return static_cast<int>(fd);
    if (errno != EAGAIN && errno != EINTR) return -1;
  }
  return -1;
}

bool IsOneComponent(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos;
}

absl::Status BadName(const std::string& name) {
  return absl::InvalidArgumentError(absl::StrCat("\"", name, "\" is not a single path component"));
}

struct Removal {
  int top_fd = -1;     // the directory at the top of the tree; deep directories are moved here
  uint64_t moved = 0;  // names given to moved directories so far
};

absl::Status RemoveEntry(Removal& removal, int dir_fd, const std::string& name, int depth);

// Removes everything in the directory `fd`, `depth` levels below the top.
absl::Status RemoveChildren(Removal& removal, int fd, int depth) {
  const int dup_fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return ErrnoStatus("dup", errno);
  DIR* dir = ::fdopendir(dup_fd);
  if (dir == nullptr) {
    const int err = errno;
    ::close(dup_fd);
    return ErrnoStatus("read directory", err);
  }
  absl::Status result = absl::UnavailableError(
      "the directory keeps changing while it is removed (someone keeps adding to it)");
  for (int pass = 0; pass < kMaxPasses; ++pass) {
    ::rewinddir(dir);
    std::vector<std::string> names;
    while (names.size() < kNamesPerPass) {
      errno = 0;
      const struct dirent* e = ::readdir(dir);
      if (e == nullptr) break;
      const std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    if (names.empty()) {
      result = errno != 0 ? ErrnoStatus("read directory", errno) : absl::OkStatus();
      break;
    }
    absl::Status s;
    for (const std::string& n : names) {
      s = RemoveEntry(removal, fd, n, depth);
      if (!s.ok()) break;
    }
    if (!s.ok()) {
      result = s;
      break;
    }
  }
  ::closedir(dir);
  return result;
}

// Moves the directory `name` of `dir_fd` to the top of the removal under a fresh name.
absl::Status MoveToTop(Removal& removal, int dir_fd, const std::string& name, bool* gone) {
  for (int i = 0; i < kMaxEntryAttempts; ++i) {
    const std::string to = absl::StrCat(".podvisor-removing-", removal.moved++);
    if (::renameat2(dir_fd, name.c_str(), removal.top_fd, to.c_str(), RENAME_NOREPLACE) == 0 ||
        errno == ENOENT) {
      *gone = true;
      return absl::OkStatus();
    }
    if (errno != EEXIST) return ErrnoStatus(absl::StrCat("move ", name, " up"), errno);
  }
  return absl::UnavailableError(absl::StrCat("move ", name, " up: every name is taken"));
}

absl::Status RemoveEntry(Removal& removal, int dir_fd, const std::string& name, int depth) {
  for (int attempt = 0; attempt < kMaxEntryAttempts; ++attempt) {
    UniqueFd entry(
        OpenAt2(dir_fd, name.c_str(), O_PATH | O_NOFOLLOW, 0, kResolve | RESOLVE_NO_XDEV));
    if (!entry.valid()) {
      if (errno == ENOENT) return absl::OkStatus();
      if (errno == ELOOP) continue;  // swapped for a symlink in between: look again
      if (errno != EXDEV) return ErrnoStatus(absl::StrCat("open ", name), errno);
      // A mount point: detach what is mounted there (all of its submounts go with it), then look
      // at what was below.
      UniqueFd root(OpenAt2(dir_fd, name.c_str(), O_PATH | O_NOFOLLOW, 0, kResolve));
      if (!root.valid()) {
        if (errno == ENOENT) return absl::OkStatus();
        if (errno == ELOOP) continue;
        return ErrnoStatus(absl::StrCat("open mount ", name), errno);
      }
      if (absl::Status s = DetachMountAt(root.get()); !s.ok()) {
        return WithContext(s, name);
      }
      continue;
    }
    struct stat st {};
    if (::fstat(entry.get(), &st) != 0) return ErrnoStatus(absl::StrCat("stat ", name), errno);
    if (!S_ISDIR(st.st_mode)) {
      if (::unlinkat(dir_fd, name.c_str(), 0) == 0 || errno == ENOENT) return absl::OkStatus();
      if (errno == EISDIR || errno == EBUSY || errno == EPERM) continue;  // changed meanwhile
      return ErrnoStatus(absl::StrCat("remove ", name), errno);
    }
    if (depth >= kMaxRemovalDepth) {
      bool gone = false;
      if (absl::Status s = MoveToTop(removal, dir_fd, name, &gone); !s.ok()) return s;
      if (gone) return absl::OkStatus();
    }
    UniqueFd dir(OpenAt2(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0,
                         kResolve | RESOLVE_NO_XDEV));
    if (!dir.valid()) {
      if (errno == ENOENT) return absl::OkStatus();
      if (errno == ELOOP || errno == ENOTDIR || errno == EXDEV) continue;
      return ErrnoStatus(absl::StrCat("open ", name), errno);
    }
    const bool top = removal.top_fd < 0;
    if (top) removal.top_fd = dir.get();
    absl::Status s = RemoveChildren(removal, dir.get(), depth + 1);
    if (top) removal.top_fd = -1;
    if (!s.ok()) return WithContext(s, name);
    if (::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) == 0 || errno == ENOENT) {
      return absl::OkStatus();
    }
    if (errno == ENOTEMPTY || errno == EEXIST || errno == EBUSY || errno == ENOTDIR) continue;
    return ErrnoStatus(absl::StrCat("remove directory ", name), errno);
  }
  return absl::UnavailableError(absl::StrCat(name, " keeps changing while it is removed"));
}

}  // namespace

absl::StatusOr<UniqueFd> OpenTrustedDir(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(absl::StrCat("open ", path), errno);
  return fd;
}

absl::StatusOr<UniqueFd> OpenBeneath(int dir_fd, const std::string& relative, uint64_t flags,
                                     bool same_mount, unsigned mode) {
  UniqueFd fd(OpenAt2(dir_fd, relative.c_str(), flags, (flags & O_CREAT) ? mode : 0,
                      kResolve | (same_mount ? RESOLVE_NO_XDEV : 0)));
  if (fd.valid()) return fd;
  const int err = errno;
  if (err == ELOOP) {
    return absl::FailedPreconditionError(absl::StrCat(
        "open ", relative, ": a component is a symlink, which is never followed here"));
  }
  if (err == EXDEV) {
    return absl::PermissionDeniedError(absl::StrCat(
        "open ", relative, ": the path leaves its directory", same_mount ? " or its mount" : ""));
  }
  return ErrnoStatus(absl::StrCat("open ", relative), err);
}

absl::StatusOr<UniqueFd> MakeDirAt(int dir_fd, const std::string& name, unsigned mode) {
  if (!IsOneComponent(name)) return BadName(name);
  if (::mkdirat(dir_fd, name.c_str(), 0700) != 0) {
    return ErrnoStatus(absl::StrCat("create directory ", name), errno);
  }
  absl::StatusOr<UniqueFd> fd =
      OpenBeneath(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, true);
  if (!fd.ok()) return fd.status();
  if (::fchmod(fd->get(), mode) != 0) return ErrnoStatus(absl::StrCat("chmod ", name), errno);
  return fd;
}

absl::StatusOr<UniqueFd> MakeFileAt(int dir_fd, const std::string& name, unsigned mode) {
  if (!IsOneComponent(name)) return BadName(name);
  // O_EXCL: a symlink (dangling or not) at `name` is EEXIST, never followed.
  UniqueFd fd(
      ::openat(dir_fd, name.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoStatus(absl::StrCat("create ", name), errno);
  if (::fchmod(fd.get(), mode) != 0) return ErrnoStatus(absl::StrCat("chmod ", name), errno);
  return fd;
}

absl::Status RemoveTreeAt(int dir_fd, const std::string& name) {
  if (!IsOneComponent(name)) return BadName(name);
  Removal removal;
  return RemoveEntry(removal, dir_fd, name, 0);
}

absl::StatusOr<UniqueFd> CloneMountTree(const std::string& source, bool recursive) {
  const unsigned flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0);
  UniqueFd fd(static_cast<int>(::syscall(SYS_open_tree, AT_FDCWD, source.c_str(), flags)));
  if (!fd.valid()) return ErrnoStatus(absl::StrCat("clone the mounts of ", source), errno);
  return fd;
}

absl::Status SetMountAttributes(int tree_fd, const MountAttributes& attributes, bool recursive) {
  struct mount_attr attr {};
  attr.attr_set = attributes.set;
  attr.attr_clr = attributes.clear;
  attr.propagation = attributes.propagation;
  const unsigned flags = AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0);
  if (::syscall(SYS_mount_setattr, tree_fd, "", flags, &attr, sizeof attr) != 0) {
    return ErrnoStatus("set mount attributes", errno);
  }
  return absl::OkStatus();
}

absl::Status MoveMountTo(int tree_fd, int target_fd) {
  if (::syscall(SYS_move_mount, tree_fd, "", target_fd, "",
                MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0) {
    return ErrnoStatus("attach mount", errno);
  }
  return absl::OkStatus();
}

absl::Status DetachMountAt(int fd) {
  const std::string path = absl::StrCat("/proc/self/fd/", fd);
  if (::umount2(path.c_str(), MNT_DETACH) != 0) return ErrnoStatus("detach mount", errno);
  return absl::OkStatus();
}

}  // namespace podvisor
