#include "pod-sandbox/vm_cgroup.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"

namespace podvisor {
namespace {

// The v1 controllers whose limits and accounting kubelet reads (cpu and cpuacct may be one
// hierarchy mounted twice, "cpu,cpuacct").
constexpr const char* kV1Controllers[] = {"memory", "cpu", "cpuacct", "pids"};
constexpr size_t kMaxParentBytes = 512;

bool IsDir(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Writes `value` to a cgroup control file (no temporary file: cgroupfs files are written in place).
absl::Status WriteControl(const std::string& path, const std::string& value) {
  std::ofstream out(path);
  out << value;
  out.flush();
  if (!out) return absl::InternalError(absl::StrCat("write ", value, " to ", path));
  return absl::OkStatus();
}

// mkdir -p of `dir` below `root`; returns the directories it created, deepest last.
absl::StatusOr<std::vector<std::string>> MakeCgroupDirs(const std::string& root,
                                                        const std::string& rel) {
  std::vector<std::string> made;
  std::string path = root;
  for (absl::string_view part : absl::StrSplit(rel, '/', absl::SkipEmpty())) {
    absl::StrAppend(&path, "/", part);
    if (mkdir(path.c_str(), 0755) == 0) {
      made.push_back(path);
    } else if (errno != EEXIST) {
      int err = errno;
      for (auto it = made.rbegin(); it != made.rend(); ++it) rmdir(it->c_str());
      return ErrnoStatus(absl::StrCat("create cgroup ", path), err);
    }
  }
  return made;
}

}  // namespace

absl::Status ValidateCgroupParent(const std::string& parent) {
  if (parent.empty()) return absl::OkStatus();
  if (parent.size() > kMaxParentBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("linux.cgroup_parent is longer than ", kMaxParentBytes, " bytes"));
  }
  if (parent[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "linux.cgroup_parent \"", parent, "\" must be an absolute cgroupfs path (the cgroup "
        "driver is cgroupfs)"));
  }
  for (absl::string_view part : absl::StrSplit(parent.substr(1), '/')) {
    bool clean = !part.empty() && part != "." && part != "..";
    for (char c : part) clean = clean && (absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-');
    if (!clean && !(part.empty() && parent == "/")) {
      return absl::InvalidArgumentError(
          absl::StrCat("linux.cgroup_parent \"", parent,
                       "\": every component must be a plain name of [A-Za-z0-9._-]"));
    }
  }
  return absl::OkStatus();
}

VmCgroup::VmCgroup(std::string root, std::string parent, std::string sandbox_id)
    : root_(std::move(root)), parent_(std::move(parent)), name_("podvisor-" + sandbox_id) {}

bool VmCgroup::IsV2() const { return access((root_ + "/cgroup.controllers").c_str(), F_OK) == 0; }

std::vector<std::string> CgroupDirs(const std::string& root, const std::string& rel) {
  if (access((root + "/cgroup.controllers").c_str(), F_OK) == 0) return {root + rel};
  std::vector<std::string> dirs;
  for (const char* controller : kV1Controllers) {
    std::string mount = absl::StrCat(root, "/", controller);
    if (IsDir(mount)) dirs.push_back(mount + rel);
  }
  return dirs;
}

absl::Status WriteCgroupLimits(const std::string& root, const std::vector<std::string>& dirs,
                               const VmCgroupLimits& limits) {
  const bool v2 = access((root + "/cgroup.controllers").c_str(), F_OK) == 0;
  for (const std::string& dir : dirs) {
    absl::Status s;
    const bool memory = v2 || absl::StrContains(dir, root + "/memory/");
    const bool cpu = v2 || absl::StrContains(dir, root + "/cpu/");
    if (memory && limits.memory_bytes > 0) {
      s = WriteControl(dir + (v2 ? "/memory.max" : "/memory.limit_in_bytes"),
                       std::to_string(limits.memory_bytes));
    }
    if (s.ok() && cpu && limits.cpu_period_us > 0 && limits.cpu_quota_us != 0) {
      if (v2) {
        s = WriteControl(dir + "/cpu.max",
                         absl::StrCat(limits.cpu_quota_us < 0 ? std::string("max")
                                                              : std::to_string(limits.cpu_quota_us),
                                      " ", limits.cpu_period_us));
      } else {
        s = WriteControl(dir + "/cpu.cfs_period_us", std::to_string(limits.cpu_period_us));
        if (s.ok()) {
          s = WriteControl(dir + "/cpu.cfs_quota_us", std::to_string(limits.cpu_quota_us));
        }
      }
    }
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

std::vector<std::string> VmCgroup::Dirs() const {
  std::string rel = parent_ == "/" ? "/" + name_ : absl::StrCat(parent_, "/", name_);
  return CgroupDirs(root_, rel);
}

absl::Status VmCgroup::Update(const VmCgroupLimits& limits) const {
  std::vector<std::string> dirs = Dirs();
  for (const std::string& dir : dirs) {
    if (!IsDir(dir)) return absl::NotFoundError(absl::StrCat("VM cgroup ", dir, " is gone"));
  }
  if (absl::Status s = WriteCgroupLimits(root_, dirs, limits); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("VM cgroup limits: ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status VmCgroup::Create(const VmCgroupLimits& limits) {
  std::vector<std::string> made;  // every directory created, to undo on failure
  absl::Cleanup undo = [&] {
    for (auto it = made.rbegin(); it != made.rend(); ++it) rmdir(it->c_str());
  };
  std::vector<std::string> dirs = Dirs();
  if (dirs.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no cgroup controllers (memory, cpu, pids) mounted under ", root_));
  }
  for (const std::string& dir : dirs) {
    auto created = MakeCgroupDirs("", dir);
    if (!created.ok()) return created.status();
    made.insert(made.end(), created->begin(), created->end());
  }
  if (!IsV2()) {
    for (const std::string& dir : dirs) {
      // QEMU joins right after it started: what it allocated until then moves along, where the
      // kernel still supports it (best effort: the amount is small).
      if (absl::StrContains(dir, root_ + "/memory/")) {
        WriteControl(dir + "/memory.move_charge_at_immigrate", "3").IgnoreError();
      }
    }
  }
  VmCgroupLimits initial = limits;
  if (initial.cpu_quota_us <= 0) initial.cpu_quota_us = 0;  // no quota: the default stays
  if (absl::Status s = WriteCgroupLimits(root_, dirs, initial); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("VM cgroup limits: ", s.message()));
  }
  std::move(undo).Cancel();
  return absl::OkStatus();
}

absl::Status VmCgroup::Remove() const {
  absl::Status result;
  for (const std::string& dir : Dirs()) {
    if (rmdir(dir.c_str()) == 0 || errno == ENOENT) continue;
    const int err = errno;
    absl::Status s = ErrnoStatus(absl::StrCat("remove cgroup ", dir), err);
    if (err == EBUSY) s = absl::FailedPreconditionError(s.message());
    if (result.ok()) result = s;
  }
  return result;
}

}  // namespace podvisor
