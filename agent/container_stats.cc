// Cgroup figures of containers and of the whole guest; cgroup updates.
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "agent/async_writer.h"
#include "agent/container_util.h"
#include "agent/containers.h"
#include "agent/containers_impl.h"
#include "agent/disks.h"
#include "agent/log.h"
#include "agent/oci_spec.h"
#include "agent/output_buffer.h"
#include "agent/reaper.h"
#include "agent/server.h"

namespace podvisor::agent {
namespace {

uint64_t ReadU64(const std::string& path) {
  std::ifstream in(path);
  uint64_t v = 0;
  in >> v;
  return v;
}

// Processes in the guest, kernel threads left out (PF_KTHREAD in /proc/<pid>/stat's flags).
uint32_t CountProcesses() {
  constexpr unsigned long kKernelThread = 0x00200000;
  uint32_t n = 0;
  if (DIR* d = opendir("/proc")) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
      const std::string stat = Slurp(std::string("/proc/") + e->d_name + "/stat");
      const size_t close = stat.rfind(')');
      if (close == std::string::npos) continue;  // gone meanwhile
      std::istringstream fields(stat.substr(close + 1));
      std::string field;
      unsigned long flags = 0;
      // state ppid pgrp session tty_nr tpgid flags
      for (int i = 0; i < 7 && fields >> field; ++i) {
        if (i == 6) flags = std::strtoul(field.c_str(), nullptr, 10);
      }
      if ((flags & kKernelThread) == 0) ++n;
    }
    closedir(d);
  }
  return n;
}

}  // namespace

v1::Response ContainerManager::Stats(const v1::StatsRequest& req) {
  std::vector<std::string> ids(req.container_ids().begin(), req.container_ids().end());
  if (ids.empty()) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    for (const auto& [id, c] : impl_->containers) ids.push_back(id);
  }
  v1::Response r;
  v1::StatsResponse* out = r.mutable_stats();
  for (const std::string& id : ids) {
    std::shared_ptr<Container> c = impl_->Find(id);
    if (!c) continue;
    const std::string dir = impl_->CgroupDir(id);
    v1::ContainerStats* s = out->add_containers();
    s->set_container_id(id);
    s->set_timestamp_ns(NowNs());
    s->set_cpu_usage_ns(StatField(Slurp(dir + "/cpu.stat"), "usage_usec") * 1000);
    const uint64_t usage = ReadU64(dir + "/memory.current");
    const std::string mem = Slurp(dir + "/memory.stat");
    const uint64_t inactive = StatField(mem, "inactive_file");
    s->set_memory_usage_bytes(usage);
    s->set_memory_working_set_bytes(usage > inactive ? usage - inactive : 0);
    s->set_memory_rss_bytes(StatField(mem, "anon"));
    s->set_page_faults(StatField(mem, "pgfault"));
    s->set_major_page_faults(StatField(mem, "pgmajfault"));
    s->set_pids(static_cast<uint32_t>(ReadU64(dir + "/pids.current")));
  }
  const std::string meminfo = Slurp("/proc/meminfo");
  auto kb = [&](const std::string& key) {
    size_t p = meminfo.find(key + ":");
    return p == std::string::npos
               ? 0ull
               : std::strtoull(meminfo.c_str() + p + key.size() + 1, nullptr, 10) * 1024ull;
  };
  out->set_guest_memory_total_bytes(kb("MemTotal"));
  out->set_guest_memory_available_bytes(kb("MemAvailable"));
  if (kb("MemTotal") > kb("MemAvailable")) {
    out->set_guest_memory_used_bytes(kb("MemTotal") - kb("MemAvailable"));
  }
  out->set_guest_cpu_usage_ns(StatField(Slurp("/sys/fs/cgroup/cpu.stat"), "usage_usec") * 1000);
  out->set_guest_process_count(CountProcesses());
  return r;
}

Error ContainerManager::UpdateResources(const v1::UpdateContainerResourcesRequest& req) {
  const std::string& id = req.container_id();
  std::shared_ptr<Container> c = impl_->Find(id);
  if (!c || !c->init) return Error(Code::kNotFound, "container " + id + " not found");
  {
    std::lock_guard<std::mutex> lock(c->init->mu);
    if (c->init->exited) {
      return Error(Code::kFailedPrecondition, "container " + id + " has exited");
    }
  }
  if (req.set_oom_score_adj() && (req.oom_score_adj() < -1000 || req.oom_score_adj() > 1000)) {
    return Error(Code::kInvalidArgument, "oom_score_adj must be within -1000..1000");
  }
  std::string json;
  if (Error e = BuildResourcesUpdateJson(req.resources(), &json); !e.ok()) return e;
  // crun converts the OCI values to cgroup v2 files exactly as it did at create (shares to
  // cpu.weight, memory+swap to memory.swap.max, ...), so created and updated limits agree.
  const std::string file = c->bundle + "/update-" + std::to_string(impl_->next_console++) + ".json";
  if (Error e = WriteWhole(file, json); !e.ok()) return e;
  const std::string log = c->bundle + "/update.log";
  std::string output;
  Error err = RunCommand(impl_->Crun({"update", "--resources", file, id}, log), &output);
  if (!err.ok()) {
    const std::string why = Slurp(log);
    err = Error(Code::kInvalidArgument, "crun update: " + (why.empty() ? err.message() : why));
  }
  unlink(file.c_str());
  unlink(log.c_str());
  if (!err.ok()) return err.With("update container " + id);
  if (req.set_oom_score_adj()) {
    std::istringstream procs(Slurp(impl_->CgroupDir(id) + "/cgroup.procs"));
    for (std::string pid; procs >> pid;) {
      // A process that exited meanwhile is no error.
      (void)WriteWhole("/proc/" + pid + "/oom_score_adj", std::to_string(req.oom_score_adj()));
    }
  }
  AgentLog(LogSeverity::kInfo, "container " + id + " resources updated");
  return Error::Ok();
}

Error ContainerManager::UpdatePodResources(const v1::UpdatePodResourcesRequest& req) {
  if (req.memory_limit_bytes() < 0 || req.cpu_quota() < -1 || req.cpu_period() < 0) {
    return Error(Code::kInvalidArgument, "pod resources: a negative limit");
  }
  if (req.cpu_period() != 0 && (req.cpu_period() < 1000 || req.cpu_period() > 1000000)) {
    return Error(Code::kInvalidArgument, "pod resources: cpu_period must be 1000..1000000 us");
  }
  // The parent of /podvisor/<id>, which crun creates below it; made here if no container has
  // been created yet, so that the limit holds for the first one too.
  const std::string dir = impl_->PodCgroupDir();
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoError("mkdir " + dir, errno);
  auto write = [&](const std::string& file, const std::string& value) -> Error {
    if (Error e = WriteWhole(dir + "/" + file, value); !e.ok()) {
      return Error(e.code() == Code::kInternal ? Code::kInvalidArgument : e.code(),
                   file + " " + value + ": " + e.message());
    }
    return Error::Ok();
  };
  const std::string memory =
      req.memory_limit_bytes() > 0 ? std::to_string(req.memory_limit_bytes()) : "max";
  if (Error e = write("memory.max", memory); !e.ok()) return e.With("update pod resources");
  if (req.cpu_quota() != 0) {
    const int64_t period = req.cpu_period() > 0 ? req.cpu_period() : 100000;
    const std::string quota = req.cpu_quota() > 0 ? std::to_string(req.cpu_quota()) : "max";
    if (Error e = write("cpu.max", quota + " " + std::to_string(period)); !e.ok()) {
      return e.With("update pod resources");
    }
  }
  AgentLog(LogSeverity::kInfo, "pod resources: memory.max " + memory);
  return Error::Ok();
}

}  // namespace podvisor::agent
