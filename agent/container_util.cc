#include "agent/container_util.h"

#include <fcntl.h>
#include <ftw.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <fstream>
#include <sstream>

namespace podvisor::agent {

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

bool IsValidId(const std::string& id) {
  if (id.empty() || id.size() > 128 || id == "." || id == "..") return false;
  for (char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) {
      return false;
    }
  }
  return true;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Error WriteWhole(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::trunc);
  out << data;
  out.close();
  if (!out) return Error(Code::kInternal, "write " + path);
  return Error::Ok();
}

bool RootIsInitramfs() {
  struct statfs fs;
  if (statfs("/", &fs) != 0) return false;
  if (fs.f_type != RAMFS_MAGIC && fs.f_type != TMPFS_MAGIC) return false;
  // After a switch to a tmpfs of our own, "/" is no longer the root of the mount tree.
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string id, parent;
  while (mountinfo >> id >> parent) {
    std::string rest;
    std::getline(mountinfo, rest);
    std::istringstream fields(rest);
    std::string dev, root, point;
    fields >> dev >> root >> point;
    if (point == "/") return id == parent || rest.find(" - rootfs ") != std::string::npos;
  }
  return true;
}

Error MakeDirs(const std::string& path) {
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    const std::string prefix = path.substr(0, pos);
    if (mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoError("mkdir " + prefix, errno);
    }
  }
  return Error::Ok();
}

static int RemoveEntry(const char* path, const struct stat*, int type, FTW*) {
  if (type == FTW_DP) {
    rmdir(path);
  } else {
    unlink(path);
  }
  return 0;
}

void RemoveTree(const std::string& path) {
  nftw(path.c_str(), RemoveEntry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

uint64_t StatField(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string k;
  uint64_t v;
  while (in >> k >> v) {
    if (k == key) return v;
  }
  return 0;
}

void CloseFd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

}  // namespace podvisor::agent
