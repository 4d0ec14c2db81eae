#include "agent/init.h"

#include <fcntl.h>
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

Error MountEarlyFilesystems() {
  static const EarlyMount kMounts[] = {
      {"proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr},
      {"sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr},
      {"devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755"},
      {"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666"},
      {"shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
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
