// HostRuntime: exec, log reopening, resource updates and stats of host containers.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/oci_spec.h"
#include "common/fs.h"
#include "common/random.h"
#include "common/status_util.h"
#include "host-runtime/child.h"
#include "host-runtime/host_runtime.h"
#include "host-runtime/monitor_client.h"
#include "network/process.h"
#include "pod-sandbox/agent_wire.h"
#include "pod-sandbox/container_spec.h"

namespace podvisor {
namespace {

struct Captured {
  std::string out, err;
  int status = 0;
  bool timed_out = false;
};

// Runs argv with stdout/stderr captured (each kept up to `limit` bytes, the rest read and
// dropped), killing it (and the process whose pid `pid_file` names) at the deadline.
absl::StatusOr<Captured> RunCaptured(const std::vector<std::string>& args, size_t limit,
                                     absl::Duration timeout, const std::string& pid_file) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return ErrnoStatus("pipe", errno);
  if (::pipe2(err, O_CLOEXEC) != 0) return ErrnoStatus("pipe", errno);
  absl::StatusOr<pid_t> spawned = host::SpawnChild(args, -1, out[1], err[1]);
  if (!spawned.ok()) return spawned.status();
  const pid_t pid = *spawned;
  ::close(out[1]);
  ::close(err[1]);
  Captured c;
  int fds[2] = {out[0], err[0]};
  std::string* bufs[2] = {&c.out, &c.err};
  const absl::Time deadline =
      timeout > absl::ZeroDuration() ? absl::Now() + timeout : absl::InfiniteFuture();
  while (fds[0] >= 0 || fds[1] >= 0) {
    pollfd p[2] = {{fds[0], POLLIN, 0}, {fds[1], POLLIN, 0}};
    int wait_ms = -1;
    if (deadline != absl::InfiniteFuture()) {
      int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
      if (left <= 0) {
        c.timed_out = true;
        break;
      }
      wait_ms = static_cast<int>(std::min<int64_t>(left, INT_MAX));
    }
    if (::poll(p, 2, wait_ms) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i] < 0 || !p[i].revents) continue;
      char buf[65536];
      ssize_t n = ::read(fds[i], buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(fds[i]);
        fds[i] = -1;
        continue;
      }
      size_t keep = std::min(static_cast<size_t>(n), limit - std::min(limit, bufs[i]->size()));
      bufs[i]->append(buf, keep);
    }
  }
  for (int fd : fds) {
    if (fd >= 0) ::close(fd);
  }
  if (c.timed_out) {
    c.status = host::EndExec(pid, pid_file);
  } else {
    while (::waitpid(pid, &c.status, 0) < 0 && errno == EINTR) {
    }
  }
  return c;
}

// The cgroup v1 file `name` of `controller` for the container, as an integer.
std::optional<uint64_t> CgroupValue(const std::string& root, const std::string& controller,
                                    const std::string& path, const std::string& name) {
  absl::StatusOr<std::string> text = ReadFile(absl::StrCat(root, "/", controller, path, "/", name));
  uint64_t v = 0;
  if (!text.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &v)) return std::nullopt;
  return v;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> HostRuntime::ExecCommand(
    const std::string& id_or_prefix, const std::vector<std::string>& args, bool tty,
    std::string* process_file) {
  if (args.empty()) return absl::InvalidArgumentError("exec needs a command");
  absl::StatusOr<Container> c = InspectContainer(id_or_prefix);
  if (!c.ok()) return c.status();
  const ContainerMetadata& m = c->metadata;
  if (c->status.state != ContainerState::kRunning) {
    return absl::FailedPreconditionError(
        absl::StrCat("container ", ShortId(m.id), " is not running"));
  }
  ProcessSpec p;
  p.args = args;
  p.terminal = tty;
  p.env = m.env;
  p.cwd = m.cwd;
  p.user.uid = m.uid;
  p.user.gid = m.gid;
  if (m.resolved_user) {
    // The init process's own groups, the image's included (Merge) or not (Strict).
    p.user.additional_gids = m.resolved_user->supplemental_groups;
  } else {
    p.user.additional_gids.assign(m.config.supplemental_groups.begin(),
                                  m.config.supplemental_groups.end());
  }
  p.no_new_privileges = m.config.no_new_privs;
  if (m.config.privileged) {
    p.capabilities = BoundingCapabilities();
  } else {
    absl::StatusOr<std::vector<std::string>> caps = HostCapabilities(m.config);
    if (!caps.ok()) return caps.status();
    p.capabilities = std::move(*caps);
  }
  agent::v1::Process wire;
  ToWireProcess(p, &wire);
  std::string json;
  if (agent::Error e = agent::BuildProcessJson(wire, false, &json); !e.ok()) {
    return absl::InvalidArgumentError(e.message());
  }
  const std::string dir = absl::StrCat(ContainerDir(m.id), "/exec");
  if (absl::Status s = MakeDirs(dir, 0700); !s.ok()) return s;
  *process_file = absl::StrCat(dir, "/", RandomHex(8));
  if (absl::Status s = WriteFileAtomic(*process_file + ".json", json, 0600); !s.ok()) return s;
  return Crun(
      {"exec", "--process", *process_file + ".json", "--pid-file", *process_file + ".pid", m.id});
}

absl::StatusOr<ExecSyncResult> HostRuntime::ExecSync(const std::string& id,
                                                     const std::vector<std::string>& cmd,
                                                     absl::Duration timeout) {
  std::string files;
  absl::StatusOr<std::vector<std::string>> argv = ExecCommand(id, cmd, false, &files);
  if (!argv.ok()) return argv.status();
  absl::StatusOr<Captured> r =
      RunCaptured(*argv, options_.exec_output_limit, timeout, files + ".pid");
  ::unlink((files + ".json").c_str());
  ::unlink((files + ".pid").c_str());
  if (!r.ok()) return WithContext(r.status(), "exec");
  if (r->timed_out) {
    return absl::DeadlineExceededError(
        absl::StrCat("command timed out after ", absl::FormatDuration(timeout)));
  }
  ExecSyncResult out;
  out.stdout_data = std::move(r->out);
  out.stderr_data = std::move(r->err);
  out.exit_code = WIFEXITED(r->status) ? WEXITSTATUS(r->status) : 128 + WTERMSIG(r->status);
  return out;
}

absl::Status HostRuntime::ReopenLog(const std::string& id_or_prefix) {
  absl::StatusOr<Container> c = InspectContainer(id_or_prefix);
  if (!c.ok()) return c.status();
  if (c->status.state != ContainerState::kRunning) {
    return absl::FailedPreconditionError(
        absl::StrCat("container ", ShortId(c->metadata.id), " is not running"));
  }
  return WithContext(
      host::ReopenMonitorLog(ContainerDir(c->metadata.id) + "/monitor", absl::Seconds(10)),
      "reopen log");
}

absl::Status HostRuntime::UpdateResources(const std::string& id_or_prefix,
                                          const ContainerLimits& update) {
  if (absl::Status s = ValidateLimits(update); !s.ok()) return s;
  absl::StatusOr<Container> c = InspectContainer(id_or_prefix);
  if (!c.ok()) return c.status();
  const std::string& id = c->metadata.id;
  if (c->status.state != ContainerState::kRunning && c->status.state != ContainerState::kCreated) {
    return absl::FailedPreconditionError(
        absl::StrCat("container ", ShortId(id), " is neither created nor running"));
  }
  auto lock = LockFor(id);
  std::lock_guard<std::mutex> guard(*lock);
  const ContainerLimits merged = MergeLimits(c->status.resources, update);
  agent::v1::LinuxResources wire;
  ToWireResources(ToGuestResources(update), &wire);
  std::string json;
  if (agent::Error e = agent::BuildResourcesUpdateJson(wire, &json); !e.ok()) {
    return absl::InvalidArgumentError(e.message());
  }
  const std::string file = absl::StrCat(ContainerDir(id), "/resources-update.json");
  if (absl::Status s = WriteFileAtomic(file, json, 0600); !s.ok()) return s;
  network::ProcessOptions p;
  p.argv = Crun({"update", "--resources", file, id});
  p.env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
  absl::StatusOr<network::ProcessResult> r = network::RunProcess(p);
  if (!r.ok()) return WithContext(r.status(), "crun update");
  if (r->exit_code != 0) {
    return absl::InternalError(
        absl::StrCat("crun update: ", absl::StripAsciiWhitespace(r->stderr_data)));
  }
  return containers_
      ->Update(id,
               [&](ContainerStatus& st) {
                 st.resources = merged;
                 return absl::OkStatus();
               })
      .status();
}

absl::StatusOr<ContainerStatsInfo> HostRuntime::Stats(const std::string& id_or_prefix) {
  absl::StatusOr<Container> c = InspectContainer(id_or_prefix);
  if (!c.ok()) return c.status();
  ContainerStatsInfo info;
  info.container = *c;
  GuestContainerStats& s = info.stats;
  s.container_id = c->metadata.id;
  s.timestamp_ns = absl::ToUnixNanos(absl::Now());
  absl::StatusOr<Sandbox> sandbox = sandboxes_->Get(c->metadata.sandbox_id);
  if (!sandbox.ok() || c->status.state != ContainerState::kRunning) return info;
  info.measured = true;
  const std::string path = CgroupsPath(*sandbox, c->metadata.id);
  const std::string& root = options_.cgroup_root;
  s.cpu_usage_ns = CgroupValue(root, "cpuacct", path, "cpuacct.usage").value_or(0);
  s.memory_usage_bytes = CgroupValue(root, "memory", path, "memory.usage_in_bytes").value_or(0);
  s.pids = static_cast<uint32_t>(CgroupValue(root, "pids", path, "pids.current").value_or(0));
  uint64_t inactive_file = 0;
  absl::StatusOr<std::string> stat = ReadFile(absl::StrCat(root, "/memory", path, "/memory.stat"));
  if (stat.ok()) {
    for (absl::string_view line : absl::StrSplit(*stat, '\n', absl::SkipEmpty())) {
      std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(line, ' ');
      uint64_t v = 0;
      if (!absl::SimpleAtoi(kv.second, &v)) continue;
      if (kv.first == "total_inactive_file") inactive_file = v;
      if (kv.first == "total_rss") s.memory_rss_bytes = v;
      if (kv.first == "total_pgfault") s.page_faults = v;
      if (kv.first == "total_pgmajfault") s.major_page_faults = v;
    }
  }
  // As kubelet and cAdvisor count it: usage less the inactive file cache.
  s.memory_working_set_bytes =
      s.memory_usage_bytes > inactive_file ? s.memory_usage_bytes - inactive_file : 0;
  return info;
}

std::vector<ContainerStatsInfo> HostRuntime::ListStats(const ContainerFilter& filter) {
  std::vector<ContainerStatsInfo> out;
  for (const Container& c : ListContainers(filter)) {
    absl::StatusOr<ContainerStatsInfo> s = Stats(c.metadata.id);
    if (s.ok()) out.push_back(std::move(*s));
  }
  return out;
}

absl::StatusOr<SandboxStatsInfo> HostRuntime::SandboxStats(const std::string& id_or_prefix) {
  absl::StatusOr<Sandbox> sandbox = InspectSandbox(id_or_prefix);
  if (!sandbox.ok()) return sandbox.status();
  const std::string& id = sandbox->metadata.id;
  if (sandbox->status.state != SandboxState::kReady) {
    return absl::UnavailableError(absl::StrCat("pod sandbox ", ShortId(id), " is not ready"));
  }
  SandboxStatsInfo info;
  info.sandbox = *sandbox;
  info.host.timestamp_ns = absl::ToUnixNanos(absl::Now());
  if (sandbox->metadata.network_mode != NamespaceMode::kNode && network_) {
    absl::StatusOr<PodNetwork> net = network_->Get(id);
    if (net.ok()) {
      info.host.default_interface = net->interface_name;
      absl::StatusOr<std::vector<InterfaceUsage>> ifaces = ReadNetnsInterfaces(net->netns_path);
      if (ifaces.ok()) info.host.interfaces = std::move(*ifaces);
    }
  }
  ContainerFilter filter;
  filter.sandbox_id_prefix = id;
  info.containers = ListStats(filter);
  return info;
}

}  // namespace podvisor
