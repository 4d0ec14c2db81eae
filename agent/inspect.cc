#include "agent/inspect.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>
#include <vector>

#include "agent/container_util.h"

namespace podvisor::agent {
namespace {

bool IsNumber(const char* s) {
  if (*s == '\0') return false;
  for (; *s != '\0'; ++s) {
    if (*s < '0' || *s > '9') return false;
  }
  return true;
}

std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// The host refuses control characters in what the guest reports: a process may name itself
// anything, so they become '?' here.
std::string Printable(std::string s, size_t max_len) {
  if (s.size() > max_len) s.resize(max_len);
  for (char& c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = '?';
  }
  return s;
}

// /proc/PID/cmdline with NULs as spaces, cut at kInspectMaxCommandBytes; the kernel thread's
// "[comm]" when it has no command line.
std::string CommandOf(const std::string& dir) {
  std::string cmdline = Slurp(dir + "/cmdline");
  if (cmdline.size() > kInspectMaxCommandBytes) cmdline.resize(kInspectMaxCommandBytes);
  while (!cmdline.empty() && cmdline.back() == '\0') cmdline.pop_back();
  for (char& c : cmdline) {
    if (c == '\0') c = ' ';
  }
  if (!cmdline.empty()) return Printable(std::move(cmdline), kInspectMaxCommandBytes);
  std::string comm = "[";
  comm.append(Trimmed(Slurp(dir + "/comm")));
  comm.push_back(']');
  return Printable(std::move(comm), kInspectMaxCommandBytes);
}

// Fills ppid, state and RSS from /proc/PID/stat. The command (field 2) may hold spaces and
// parentheses: the fields after it start after its last ')'.
bool ParseStat(const std::string& stat, v1::GuestProcess* p) {
  const size_t close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return false;
  std::istringstream in(stat.substr(close + 2));
  std::vector<std::string> f;
  std::string word;
  while (in >> word && f.size() < 22) f.push_back(word);
  if (f.size() < 22) return false;
  p->set_state(Printable(f[0], 8));
  p->set_ppid(std::atoi(f[1].c_str()));
  const long page = sysconf(_SC_PAGESIZE);
  p->set_rss_bytes(std::strtoull(f[21].c_str(), nullptr, 10) * static_cast<uint64_t>(page));
  return true;
}

uint32_t UidOf(const std::string& status) {
  const size_t at = status.find("\nUid:");
  if (at == std::string::npos) return 0;
  return static_cast<uint32_t>(std::strtoul(status.c_str() + at + 5, nullptr, 10));
}

void AddProcesses(const std::string& proc_root, v1::InspectResponse* out) {
  DIR* d = opendir(proc_root.c_str());
  if (d == nullptr) return;
  while (dirent* e = readdir(d)) {
    if (!IsNumber(e->d_name)) continue;
    if (out->processes_size() >= kInspectMaxProcesses) {
      out->set_truncated(true);
      break;
    }
    const std::string dir = proc_root + "/" + e->d_name;
    v1::GuestProcess p;
    p.set_pid(std::atoi(e->d_name));
    // A process that ended while we read it is left out.
    if (!ParseStat(Slurp(dir + "/stat"), &p)) continue;
    p.set_command(CommandOf(dir));
    p.set_uid(UidOf(Slurp(dir + "/status")));
    p.set_container_id(ContainerOfCgroup(Slurp(dir + "/cgroup")));
    *out->add_processes() = std::move(p);
  }
  closedir(d);
}

// /proc/self/mountinfo: "id parent major:minor root target options [optional...] - type source
// super-options".
void AddMounts(const std::string& proc_root, v1::InspectResponse* out) {
  std::istringstream lines(Slurp(proc_root + "/self/mountinfo"));
  std::string line;
  while (std::getline(lines, line)) {
    if (out->mounts_size() >= kInspectMaxMounts) {
      out->set_truncated(true);
      return;
    }
    std::istringstream in(line);
    std::vector<std::string> f;
    std::string word;
    while (in >> word) f.push_back(word);
    size_t dash = 0;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (f.size() < 6 || dash + 2 >= f.size()) continue;
    v1::GuestMount* m = out->add_mounts();
    m->set_target(Printable(f[4], kInspectMaxPath));
    m->set_options(Printable(f[5], kInspectMaxPath));
    m->set_fs_type(Printable(f[dash + 1], 255));
    m->set_source(Printable(f[dash + 2], kInspectMaxPath));
  }
}

void AddDisks(const std::string& sys_root, v1::InspectResponse* out) {
  const std::string dir = sys_root + "/block";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    if (out->disks_size() >= kInspectMaxDisks) {
      out->set_truncated(true);
      break;
    }
    const std::string base = dir + "/" + e->d_name;
    v1::GuestDisk* disk = out->add_disks();
    disk->set_name(Printable(e->d_name, 255));
    disk->set_serial(Printable(Trimmed(Slurp(base + "/serial")), 255));
    // sysfs sizes are in 512-byte sectors whatever the device's block size.
    disk->set_size_bytes(std::strtoull(Slurp(base + "/size").c_str(), nullptr, 10) * 512);
    disk->set_read_only(Trimmed(Slurp(base + "/ro")) == "1");
  }
  closedir(d);
  // Where each disk is mounted, from the mounts already read.
  for (v1::GuestDisk& disk : *out->mutable_disks()) {
    const std::string dev = "/dev/" + disk.name();
    for (const v1::GuestMount& m : out->mounts()) {
      if (m.source() == dev) {
        disk.set_mount_point(m.target());
        break;
      }
    }
  }
}

}  // namespace

std::string ContainerOfCgroup(const std::string& cgroup_text) {
  static const std::string kParent = "/podvisor/";
  const size_t at = cgroup_text.find(kParent);
  if (at == std::string::npos) return "";
  const size_t start = at + kParent.size();
  size_t end = start;
  while (end < cgroup_text.size() && cgroup_text[end] != '/' && cgroup_text[end] != '\n') ++end;
  std::string id = cgroup_text.substr(start, end - start);
  return IsValidId(id) ? id : "";
}

v1::InspectResponse InspectGuest(const std::string& proc_root, const std::string& sys_root) {
  v1::InspectResponse out;
  AddProcesses(proc_root, &out);
  AddMounts(proc_root, &out);
  AddDisks(sys_root, &out);
  return out;
}

}  // namespace podvisor::agent
