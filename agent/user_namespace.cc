#include "agent/user_namespace.h"

#include <dirent.h>
#include <endian.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <utility>

#include "agent/reaper.h"

namespace podvisor::agent {
namespace {

constexpr uint64_t kNoId = 0xffffffffull;  // (uid_t)-1: "no id" to the kernel
// Deeper than any image needs; each level holds two descriptors.
constexpr int kMaxDepth = 256;

Error ValidateRange(const v1::IdMapping& m, const char* what) {
  if (m.container_id() != 0) {
    return Error(Code::kInvalidArgument, std::string(what) +
                                             " mapping must map container id 0 (it maps " +
                                             std::to_string(m.container_id()) + ")");
  }
  if (m.length() == 0) {
    return Error(Code::kInvalidArgument, std::string(what) + " mapping has length 0");
  }
  if (uint64_t{m.host_id()} + m.length() > kNoId) {
    return Error(Code::kInvalidArgument, std::string(what) + " mapping " +
                                             std::to_string(m.host_id()) + "+" +
                                             std::to_string(m.length()) + " passes 2^32-1");
  }
  return Error::Ok();
}

bool SameRange(const v1::IdMapping& a, const v1::IdMapping& b) {
  return a.container_id() == b.container_id() && a.host_id() == b.host_id() &&
         a.length() == b.length();
}

std::string MapLine(const v1::IdMapping& m) {
  return std::to_string(m.container_id()) + " " + std::to_string(m.host_id()) + " " +
         std::to_string(m.length()) + "\n";
}

Error WriteProcFile(const std::string& path, const std::string& data) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open " + path, errno);
  ssize_t n = write(fd, data.data(), data.size());
  int e = errno;
  close(fd);
  if (n != static_cast<ssize_t>(data.size())) return ErrnoError("write " + path, n < 0 ? e : EIO);
  return Error::Ok();
}

// Keeps the namespace of `ns` (a /proc/<pid>/ns/ file) by a bind mount on `path`.
Error BindNamespace(const std::string& ns, const std::string& path) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return ErrnoError("create " + path, errno);
  close(fd);
  if (mount(ns.c_str(), path.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    return ErrnoError("bind " + ns + " at " + path, errno);
  }
  return Error::Ok();
}

struct Shift {
  const v1::UserNamespace& ns;
  uint64_t mnt_id = 0;
  // Hard links: (dev, ino) -> the ids the file had before the first of its names was shifted.
  std::map<std::pair<dev_t, ino_t>, std::pair<uid_t, gid_t>> links;
  size_t shifted = 0;
};

// The mount a name below `dirfd` is on, or `dirfd` itself with `flags` AT_EMPTY_PATH and name ""
// (statx's mount id: overlayfs reports the lower layers' st_dev for files, so st_dev cannot tell
// a mount point).
bool MountId(int dirfd, const char* name, int flags, uint64_t* id) {
  struct statx sx {};
  if (statx(dirfd, name, flags | AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_MNT_ID, &sx) != 0 ||
      !(sx.stx_mask & STATX_MNT_ID)) {
    return false;
  }
  *id = sx.stx_mnt_id;
  return true;
}

// A file capability (security.capability) rewritten as v3 with the namespace's root as its
// owner; false when the value is none the kernel writes.
bool ShiftCapability(const char* value, ssize_t size, const v1::IdMapping& uids,
                     vfs_ns_cap_data* out) {
  if (size != XATTR_CAPS_SZ_2 && size != XATTR_CAPS_SZ_3) return false;
  std::memset(out, 0, sizeof(*out));
  std::memcpy(out, value, static_cast<size_t>(size));
  const uint32_t magic = le32toh(out->magic_etc);
  const uint32_t revision = magic & VFS_CAP_REVISION_MASK;
  if (revision != VFS_CAP_REVISION_2 && revision != VFS_CAP_REVISION_3) return false;
  const uint32_t rootid = revision == VFS_CAP_REVISION_3 ? le32toh(out->rootid) : 0;
  out->magic_etc = htole32((magic & ~VFS_CAP_REVISION_MASK) | VFS_CAP_REVISION_3);
  out->rootid = htole32(MapId(uids, rootid));
  return true;
}

Error ShiftEntry(int dirfd, const char* name, const std::string& path, const struct stat& st,
                 Shift* s) {
  uid_t from_uid = st.st_uid;
  gid_t from_gid = st.st_gid;
  const bool linked = !S_ISDIR(st.st_mode) && st.st_nlink > 1;
  if (linked) {
    auto [it, inserted] = s->links.try_emplace({st.st_dev, st.st_ino}, from_uid, from_gid);
    from_uid = it->second.first;
    from_gid = it->second.second;
  }
  const uid_t to_uid = MapId(s->ns.uids(), from_uid);
  const gid_t to_gid = MapId(s->ns.gids(), from_gid);
  if (st.st_uid == to_uid && st.st_gid == to_gid) return Error::Ok();  // another name did it
  // A regular file's set-id bits and capability go with chown(2): read them first.
  char cap[XATTR_CAPS_SZ_3];
  ssize_t cap_size = -1;
  int fd = -1;
  if (S_ISREG(st.st_mode)) {
    fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) return ErrnoError("open " + path, errno);
    cap_size = fgetxattr(fd, "security.capability", cap, sizeof(cap));
  }
  Error err;
  if (fchownat(dirfd, name, to_uid, to_gid, AT_SYMLINK_NOFOLLOW) != 0) {
    err = ErrnoError("chown " + path, errno);
  } else if (fd >= 0 && (st.st_mode & (S_ISUID | S_ISGID)) != 0 &&
             fchmod(fd, st.st_mode & 07777) != 0) {
    err = ErrnoError("chmod " + path, errno);
  } else if (fd >= 0 && cap_size > 0) {
    vfs_ns_cap_data shifted;
    if (ShiftCapability(cap, cap_size, s->ns.uids(), &shifted) &&
        fsetxattr(fd, "security.capability", &shifted, XATTR_CAPS_SZ_3, 0) != 0) {
      err = ErrnoError("set the file capability of " + path, errno);
    }
  }
  if (fd >= 0) close(fd);
  if (err.ok()) ++s->shifted;
  return err;
}

Error ShiftTree(int dirfd, const std::string& path, Shift* s, int depth) {
  if (depth > kMaxDepth)
    return Error(Code::kInvalidArgument,
                 path + ": directories nested deeper than " + std::to_string(kMaxDepth));
  int listing = dup(dirfd);
  if (listing < 0) return ErrnoError("dup", errno);
  DIR* dir = fdopendir(listing);
  if (!dir) {
    int e = errno;
    close(listing);
    return ErrnoError("opendir " + path, e);
  }
  Error err;
  while (err.ok()) {
    errno = 0;
    dirent* d = readdir(dir);
    if (!d) {
      if (errno != 0) err = ErrnoError("readdir " + path, errno);
      break;
    }
    if (std::strcmp(d->d_name, ".") == 0 || std::strcmp(d->d_name, "..") == 0) continue;
    const std::string child = path + "/" + d->d_name;
    uint64_t mnt = 0;
    if (!MountId(dirfd, d->d_name, 0, &mnt)) {
      err = ErrnoError("statx " + child, errno);
      break;
    }
    if (mnt != s->mnt_id) continue;  // another filesystem mounted here: not the image's
    struct stat st;
    if (fstatat(dirfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      err = ErrnoError("stat " + child, errno);
      break;
    }
    if (S_ISDIR(st.st_mode)) {
      int sub = openat(dirfd, d->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0) {
        err = ErrnoError("open " + child, errno);
        break;
      }
      err = ShiftTree(sub, child, s, depth + 1);
      close(sub);
      if (!err.ok()) break;
    }
    err = ShiftEntry(dirfd, d->d_name, child, st, s);
  }
  closedir(dir);
  return err;
}

}  // namespace

uint32_t MapId(const v1::IdMapping& m, uint32_t id) {
  if (id < m.container_id() || id - m.container_id() >= m.length()) return id;
  return m.host_id() + (id - m.container_id());
}

Error ValidateUserNamespace(const v1::UserNamespace& userns) {
  if (!userns.has_uids() || !userns.has_gids()) {
    return Error(Code::kInvalidArgument, "a user namespace needs one uid and one gid mapping");
  }
  if (Error e = ValidateRange(userns.uids(), "uid"); !e.ok()) return e;
  return ValidateRange(userns.gids(), "gid");
}

Error PodUserNamespace::Ensure(const v1::UserNamespace& want) {
  if (Error e = ValidateUserNamespace(want); !e.ok()) return e;
  std::lock_guard<std::mutex> lock(mu_);
  if (made_) {
    if (!SameRange(want.uids(), made_with_.uids()) || !SameRange(want.gids(), made_with_.gids())) {
      return Error(Code::kFailedPrecondition,
                   "the pod's user namespace was made with other mappings");
    }
    return Error::Ok();
  }
  const std::string mq = mqueue();
  if (mkdir(mq.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoError("mkdir " + mq, errno);
  if (mount("mqueue", mq.c_str(), "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    return ErrnoError("mount mqueue at " + mq, errno);
  }
  // A child unshares a user namespace (a multi-threaded process cannot), the agent writes its
  // maps from outside (as the parent namespace's root: no setgroups restriction) and keeps the
  // namespace by a bind mount of its nsfs file; the child then exits.
  int ready[2], go[2];
  if (pipe2(ready, O_CLOEXEC) != 0) return ErrnoError("pipe", errno);
  if (pipe2(go, O_CLOEXEC) != 0) {
    int e = errno;
    close(ready[0]);
    close(ready[1]);
    return ErrnoError("pipe", e);
  }
  pid_t pid = fork();
  if (pid == 0) {
    // Nothing of the agent's may stay open in the pod's PID 1 below (it never execs): only the
    // two pipe ends survive, then those too.
    const int r = ready[1], g = go[0];
    const unsigned lo = static_cast<unsigned>(std::min(r, g)),
                   hi = static_cast<unsigned>(std::max(r, g));
    if (lo > 0) syscall(SYS_close_range, 0u, lo - 1, 0u);
    if (hi > lo + 1) syscall(SYS_close_range, lo + 1, hi - 1, 0u);
    syscall(SYS_close_range, hi + 1, ~0u, 0u);
    char c = 0;
    if (unshare(CLONE_NEWUSER) != 0) _exit(1);
    if (write(r, &c, 1) != 1) _exit(1);
    ssize_t got;
    while ((got = read(g, &c, 1)) < 0 && errno == EINTR) {
    }
    if (got != 1) _exit(0);  // the agent gave up
    // The pod's PID namespace, the user namespace's own (a container in the user namespace can
    // mount /proc only for a PID namespace it owns): its PID 1 reaps orphans for good.
    if (unshare(CLONE_NEWPID) != 0) _exit(1);
    pid_t init = fork();
    if (init == 0) {
      close(r);
      close(g);
      prctl(PR_SET_NAME, "pause", 0, 0, 0);  // what the pod's processes see as its PID 1
      for (;;) {
        if (wait(nullptr) < 0) sleep(1);
      }
    }
    if (write(r, &init, sizeof(init)) != static_cast<ssize_t>(sizeof(init))) _exit(1);
    _exit(0);
  }
  const int fork_errno = errno;
  close(ready[1]);
  close(go[0]);
  if (pid < 0) {
    close(ready[0]);
    close(go[1]);
    return ErrnoError("fork", fork_errno);
  }
  Error err;
  char c;
  ssize_t n;
  while ((n = read(ready[0], &c, 1)) < 0 && errno == EINTR) {
  }
  const std::string proc = "/proc/" + std::to_string(pid);
  if (n != 1) {
    err = Error(Code::kInternal, "the guest kernel refused a new user namespace");
  }
  if (err.ok()) err = WriteProcFile(proc + "/uid_map", MapLine(want.uids()));
  if (err.ok()) err = WriteProcFile(proc + "/gid_map", MapLine(want.gids()));
  pid_t init = 0;
  if (err.ok() && write(go[1], "g", 1) != 1)
    err = ErrnoError("resume the namespace's child", errno);
  if (err.ok()) {
    while ((n = read(ready[0], &init, sizeof(init))) < 0 && errno == EINTR) {
    }
    if (n != static_cast<ssize_t>(sizeof(init)) || init <= 0) {
      err = Error(Code::kInternal, "the guest kernel refused the pod's PID namespace");
    }
  }
  const std::string init_proc = "/proc/" + std::to_string(init);
  // From the PID 1, which stays (the child exits as soon as it has written its pid).
  if (err.ok()) err = BindNamespace(init_proc + "/ns/user", path_);
  if (err.ok()) err = BindNamespace(init_proc + "/ns/pid", pid_path());
  close(ready[0]);
  close(go[1]);  // the child exits (having made the PID 1, or not)
  ProcessReaper::Get().Wait(pid);
  if (!err.ok()) {
    if (init > 0) kill(init, SIGKILL);
    umount2(path_.c_str(), MNT_DETACH);
    umount2(pid_path().c_str(), MNT_DETACH);
    umount2(mq.c_str(), MNT_DETACH);
    return err.With("make the pod's user namespace");
  }
  made_ = true;
  made_with_ = want;
  return Error::Ok();
}

Error ShiftOwnership(const std::string& root, const v1::UserNamespace& userns,
                     size_t* files_shifted) {
  if (Error e = ValidateUserNamespace(userns); !e.ok()) return e;
  int fd = open(root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open " + root, errno);
  Shift s{userns, 0, {}, 0};
  Error err;
  struct stat st;
  if (!MountId(fd, "", AT_EMPTY_PATH, &s.mnt_id)) {
    err = Error(Code::kFailedPrecondition, "the guest kernel gives no statx mount ids");
  }
  if (err.ok()) err = ShiftTree(fd, root, &s, 0);
  if (err.ok() && fstat(fd, &st) != 0) err = ErrnoError("stat " + root, errno);
  if (err.ok() &&
      fchown(fd, MapId(userns.uids(), st.st_uid), MapId(userns.gids(), st.st_gid)) != 0) {
    err = ErrnoError("chown " + root, errno);
  }
  close(fd);
  if (files_shifted) *files_shifted = s.shifted + (err.ok() ? 1 : 0);
  return err.With("shift " + root + " into the pod's user namespace");
}

}  // namespace podvisor::agent
