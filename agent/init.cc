#include "agent/init.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/sendfile.h>
#include <sys/statfs.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "agent/log.h"

namespace podvisor::agent {
namespace {

bool IsMountPoint(const char* path) {
  struct stat st, parent;
  std::string up = std::string(path) + "/..";
  if (stat(path, &st) != 0 || stat(up.c_str(), &parent) != 0) return false;
  return st.st_dev != parent.st_dev;
}

struct EarlyMount {
  const char* source;
  const char* target;
  const char* type;
  unsigned long flags;
  const char* data;
};

}  // namespace

namespace {

constexpr char kNewRoot[] = "/.podvisor-root";

Error CopyTree(const std::string& from, const std::string& to, dev_t dev) {
  DIR* d = opendir(from.c_str());
  if (d == nullptr) return ErrnoError("opendir " + from, errno);
  Error result;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    const std::string src = (from == "/" ? "" : from) + "/" + name;
    const std::string dst = to + "/" + name;
    if (src == kNewRoot) continue;
    struct stat st;
    if (lstat(src.c_str(), &st) != 0 || st.st_dev != dev) continue;
    // Needed only until now: /init runs already, the modules are loaded.
    if (src == "/init" || src == "/usr/lib/modules" || (src == "/lib/modules" && S_ISDIR(st.st_mode))) {
      continue;
    }
    Error err;
    if (S_ISDIR(st.st_mode)) {
      if (mkdir(dst.c_str(), st.st_mode & 07777) != 0 && errno != EEXIST) {
        err = ErrnoError("mkdir " + dst, errno);
      } else {
        err = CopyTree(src, dst, dev);
        chmod(dst.c_str(), st.st_mode & 07777);
      }
    } else if (S_ISLNK(st.st_mode)) {
      char target[4096];
      ssize_t n = readlink(src.c_str(), target, sizeof(target) - 1);
      if (n < 0 || symlink(std::string(target, n).c_str(), dst.c_str()) != 0) {
        err = ErrnoError("symlink " + dst, errno);
      }
    } else if (S_ISREG(st.st_mode)) {
      int in = open(src.c_str(), O_RDONLY | O_CLOEXEC);
      int out = open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 07777);
      off_t left = st.st_size;
      while (in >= 0 && out >= 0 && left > 0) {
        ssize_t n = sendfile(out, in, nullptr, static_cast<size_t>(left));
        if (n <= 0) break;
        left -= n;
      }
      if (in < 0 || out < 0 || left > 0) err = ErrnoError("copy " + src, errno);
      if (in >= 0) close(in);
      if (out >= 0) close(out);
    } else {
      if (mknod(dst.c_str(), st.st_mode, st.st_rdev) != 0) err = ErrnoError("mknod " + dst, errno);
    }
    if (err.ok()) lchown(dst.c_str(), st.st_uid, st.st_gid);
    if (!err.ok() && result.ok()) result = err;
  }
  closedir(d);
  return result;
}

// Deletes everything under `dirfd` on device `dev` (fd-relative: the old root is no longer
// reachable by path once the new root is in place).
void DeleteTreeAt(int dirfd, dev_t dev) {
  DIR* d = fdopendir(dirfd);
  if (d == nullptr) {
    close(dirfd);
    return;
  }
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_dev != dev) continue;
    if (S_ISDIR(st.st_mode)) {
      int sub = openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0) DeleteTreeAt(sub, dev);
      unlinkat(dirfd, name.c_str(), AT_REMOVEDIR);
    } else {
      unlinkat(dirfd, name.c_str(), 0);
    }
  }
  closedir(d);
}

}  // namespace

Error MoveRootToTmpfs(int* old_root_fd) {
  *old_root_fd = -1;
  struct statfs fs;
  if (statfs("/", &fs) != 0 || (fs.f_type != RAMFS_MAGIC && fs.f_type != TMPFS_MAGIC)) {
    return Error::Ok();
  }
  struct stat root;
  if (stat("/", &root) != 0) return ErrnoError("stat /", errno);
  if (mkdir(kNewRoot, 0755) != 0 && errno != EEXIST) return ErrnoError("mkdir new root", errno);
  if (mount("tmpfs", kNewRoot, "tmpfs", 0, "mode=0755") != 0) {
    return ErrnoError("mount tmpfs for the root", errno);
  }
  if (Error e = CopyTree("/", kNewRoot, root.st_dev); !e.ok()) {
    umount2(kNewRoot, MNT_DETACH);
    return e.With("copy the initramfs");
  }
  int old_root = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (chdir(kNewRoot) != 0 || mount(".", "/", nullptr, MS_MOVE, nullptr) != 0 ||
      chroot(".") != 0 || chdir("/") != 0) {
    Error e = ErrnoError("switch to the new root", errno);
    if (old_root >= 0) close(old_root);
    return e;
  }
  *old_root_fd = old_root;
  return Error::Ok();
}

void FreeOldRoot(int old_root_fd) {
  struct stat st;
  if (old_root_fd < 0 || fstat(old_root_fd, &st) != 0) return;
  DeleteTreeAt(old_root_fd, st.st_dev);
}

Error MountEarlyFilesystems() {
  static const EarlyMount kMounts[] = {
      {"proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr},
      {"sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr},
      {"devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755"},
      {"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666"},
      {"shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k"},
      {"cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC,
       "nsdelegate"},
      {"tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"},
      {"tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
  };
  Error first;
  for (const EarlyMount& m : kMounts) {
    mkdir(m.target, 0755);
    if (IsMountPoint(m.target)) continue;
    if (mount(m.source, m.target, m.type, m.flags, m.data) != 0) {
      Error e = ErrnoError(std::string("mount ") + m.type + " on " + m.target, errno);
      AgentLog(LogSeverity::kWarning, e.message());
      if (first.ok()) first = e;
    }
  }
  symlink("/proc/self/fd", "/dev/fd");
  symlink("/proc/self/fd/0", "/dev/stdin");
  symlink("/proc/self/fd/1", "/dev/stdout");
  symlink("/proc/self/fd/2", "/dev/stderr");
  symlink("pts/ptmx", "/dev/ptmx");
  // Enable the controllers containers need in the root cgroup's children.
  if (int fd = open("/sys/fs/cgroup/cgroup.subtree_control", O_WRONLY | O_CLOEXEC); fd >= 0) {
    for (const char* c : {"+cpu", "+cpuset", "+io", "+memory", "+pids", "+hugetlb"}) {
      (void)!write(fd, c, strlen(c));
    }
    close(fd);
  }
  return first;
}

std::vector<std::string> ParseModuleList(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    const size_t e = line.find_last_not_of(" \t\r");
    out.push_back(line.substr(b, e - b + 1));
  }
  return out;
}

Error LoadKernelModules(const std::string& load_order_file) {
  std::ifstream in(load_order_file);
  if (!in) return Error::Ok();
  std::stringstream text;
  text << in.rdbuf();
  Error first;
  for (const std::string& path : ParseModuleList(text.str())) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      Error e = ErrnoError("open module " + path, errno);
      AgentLog(LogSeverity::kWarning, e.message());
      if (first.ok()) first = e;
      continue;
    }
    long rc = syscall(SYS_finit_module, fd, "", 0);
    int err = errno;
    close(fd);
    if (rc != 0 && err != EEXIST) {
      Error e = ErrnoError("load module " + path, err);
      AgentLog(LogSeverity::kWarning, e.message());
      if (first.ok()) first = e;
    }
  }
  return first;
}

void PowerOff(bool reboot_instead) {
  sync();
  ::reboot(reboot_instead ? RB_AUTOBOOT : RB_POWER_OFF);
  AgentLog(LogSeverity::kError, "reboot() failed");
}

}  // namespace podvisor::agent
