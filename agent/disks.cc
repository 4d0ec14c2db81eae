#include "agent/disks.h"

#include <dirent.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <fstream>
#include <map>
#include <sstream>

namespace podvisor::agent {
namespace {

std::string ReadTrimmed(const std::string& path, size_t skip = 0) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  std::string v = s.str();
  if (v.size() <= skip) return "";
  v = v.substr(skip);
  while (!v.empty() && (std::isspace(static_cast<unsigned char>(v.back())) || v.back() == '\0')) {
    v.pop_back();
  }
  size_t b = 0;
  while (b < v.size() && std::isspace(static_cast<unsigned char>(v[b]))) ++b;
  return v.substr(b);
}

}  // namespace

bool IsValidSerial(const std::string& serial) {
  if (serial.empty() || serial.size() > 64) return false;
  for (char c : serial) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

Error FindBlockDevice(const std::string& sysfs_root, const std::string& serial, int timeout_ms,
                      std::string* device) {
  if (!IsValidSerial(serial)) return Error(Code::kInvalidArgument, "invalid disk serial");
  const std::string dir = sysfs_root + "/block";
  for (int waited = 0;; waited += 10) {
    if (DIR* d = opendir(dir.c_str())) {
      while (dirent* e = readdir(d)) {
        if (e->d_name[0] == '.') continue;
        const std::string base = dir + "/" + e->d_name;
        if (ReadTrimmed(base + "/serial") == serial ||
            ReadTrimmed(base + "/device/vpd_pg80", 4) == serial) {
          *device = std::string("/dev/") + e->d_name;
          closedir(d);
          return Error::Ok();
        }
      }
      closedir(d);
    }
    if (waited >= timeout_ms) break;
    usleep(10 * 1000);
  }
  return Error(Code::kNotFound, "no disk with serial " + serial);
}

Error MountWithOptions(const std::string& source, const std::string& target,
                       const std::string& type, const std::vector<std::string>& options,
                       bool readonly) {
  static const std::map<std::string, std::pair<unsigned long, bool>> kFlags = {
      {"ro", {MS_RDONLY, true}},        {"rw", {MS_RDONLY, false}},
      {"nosuid", {MS_NOSUID, true}},    {"suid", {MS_NOSUID, false}},
      {"nodev", {MS_NODEV, true}},      {"dev", {MS_NODEV, false}},
      {"noexec", {MS_NOEXEC, true}},    {"exec", {MS_NOEXEC, false}},
      {"noatime", {MS_NOATIME, true}},  {"relatime", {MS_RELATIME, true}},
      {"sync", {MS_SYNCHRONOUS, true}}, {"bind", {MS_BIND, true}},
      {"rbind", {MS_BIND | MS_REC, true}},
  };
  unsigned long flags = readonly ? MS_RDONLY : 0;
  std::string data;
  for (const std::string& o : options) {
    if (o.find(',') != std::string::npos || o.find('\0') != std::string::npos) {
      return Error(Code::kInvalidArgument, "bad mount option \"" + o + "\"");
    }
    auto it = kFlags.find(o);
    if (it == kFlags.end()) {
      data += (data.empty() ? "" : ",") + o;
    } else if (it->second.second) {
      flags |= it->second.first;
    } else {
      flags &= ~it->second.first;
    }
  }
  if (mount(source.c_str(), target.c_str(), type.c_str(), flags,
            data.empty() ? nullptr : data.c_str()) != 0) {
    return ErrnoError("mount " + source + " on " + target + " (" + type + ")", errno);
  }
  return Error::Ok();
}

Error UnmountDevice(const std::string& device) {
  std::ifstream in("/proc/self/mounts");
  std::string src, target, rest;
  std::vector<std::string> targets;
  while (in >> src >> target && std::getline(in, rest)) {
    if (src == device) targets.push_back(target);
  }
  std::sort(targets.begin(), targets.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  for (const std::string& t : targets) {
    if (umount2(t.c_str(), 0) != 0 && umount2(t.c_str(), MNT_DETACH) != 0) {
      return ErrnoError("unmount " + t, errno);
    }
  }
  return Error::Ok();
}

}  // namespace podvisor::agent
