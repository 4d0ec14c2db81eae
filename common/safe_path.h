#pragma once

// File system operations inside a directory tree that someone else can write: a pod VM's shared
// directory, which guest root changes at will (renames, symlinks, new directories) while the host
// works in it. Every operation here is relative to a directory descriptor the caller trusts and
// resolves nothing by name through the hostile tree: openat2 with RESOLVE_BENEATH (no escape
// through ".." or an absolute symlink), RESOLVE_NO_SYMLINKS and RESOLVE_NO_MAGICLINKS, single
// components for creation and removal (mkdirat, unlinkat never follow a final symlink), and mounts
// attached to or detached from an O_PATH descriptor, never to a path. Thread-safe (no state).

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace podvisor {

// An owned file descriptor, closed on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release();

 private:
  int fd_ = -1;
};

// Opens a directory by an ordinary path: the caller trusts every component of it.
absl::StatusOr<UniqueFd> OpenTrustedDir(const std::string& path);

// Opens `relative` (one or more components) beneath `dir_fd`: no component may be a symlink or
// leave `dir_fd` (ELOOP / EXDEV answer as FAILED_PRECONDITION / PERMISSION_DENIED); with
// `same_mount`, no component may cross a mount point either (EXDEV). `flags` as for open(2);
// O_CLOEXEC is always added.
absl::StatusOr<UniqueFd> OpenBeneath(int dir_fd, const std::string& relative, uint64_t flags,
                                     bool same_mount = false, unsigned mode = 0);

// Creates the directory or empty regular file `name` (one component, no '/') in `dir_fd` with
// `mode` exactly and returns an O_PATH descriptor of what was created. ALREADY_EXISTS when
// anything (a symlink included) is there: nothing is followed, nothing existing is reused.
absl::StatusOr<UniqueFd> MakeDirAt(int dir_fd, const std::string& name, unsigned mode);
absl::StatusOr<UniqueFd> MakeFileAt(int dir_fd, const std::string& name, unsigned mode);

// Removes `name` (one component) in `dir_fd` and everything under it; missing is not an error. A
// symlink is removed, never followed. Whatever is mounted at or under it is detached
// (umount2(MNT_DETACH) through /proc/self/fd of an O_PATH descriptor of the mount's root) before
// anything below it is touched, so nothing is deleted through a mount. Open descriptors stay
// bounded whatever the depth: directories deeper than a fixed bound are moved up (renameat within
// the tree) and removed from there. A tree that keeps changing under the removal fails after a
// bounded number of passes (UNAVAILABLE) instead of looping for ever.
absl::Status RemoveTreeAt(int dir_fd, const std::string& name);

// Mount attributes (MOUNT_ATTR_* of mount_setattr(2)).
struct MountAttributes {
  uint64_t set = 0;
  uint64_t clear = 0;
  uint64_t propagation = 0;  // 0, MS_PRIVATE, MS_SLAVE, MS_SHARED or MS_UNBINDABLE
};

// A detached copy of the mount tree at `source` (open_tree(OPEN_TREE_CLONE), with AT_RECURSIVE
// when `recursive`): it is nowhere in the file system until MoveMountTo attaches it. `source` is
// resolved as an ordinary path: the caller trusts it.
absl::StatusOr<UniqueFd> CloneMountTree(const std::string& source, bool recursive);

// mount_setattr(2) on the mount `tree_fd` is the root of, and every mount below it when
// `recursive` (AT_RECURSIVE).
absl::Status SetMountAttributes(int tree_fd, const MountAttributes& attributes, bool recursive);

// Attaches the detached tree `tree_fd` on the file or directory `target_fd` (an O_PATH descriptor,
// from MakeDirAt / MakeFileAt): move_mount with both ends given as descriptors, so no path is
// resolved between the creation of the target and the mount.
absl::Status MoveMountTo(int tree_fd, int target_fd);

// Detaches (MNT_DETACH) the mount whose root `fd` is, through /proc/self/fd.
absl::Status DetachMountAt(int fd);

}  // namespace podvisor
