#include "cri/admin_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/fs.h"
#include "common/log.h"
#include "cri/vm_inventory.h"
#include "nlohmann/json.hpp"

namespace podvisor::cri {
namespace {

constexpr size_t kMaxRequestBytes = 64 * 1024;
constexpr absl::Duration kAgentTimeout = absl::Seconds(5);
constexpr int kIoTimeoutMs = 5000;

absl::StatusOr<std::shared_ptr<AgentClient>> AgentOf(const AdminContext& c, const VmRow& vm) {
  if (vm.state != "ready") {
    return absl::FailedPreconditionError(
        absl::StrCat("pod sandbox ", ShortId(vm.id), " is not ready"));
  }
  return c.sandboxes->Agent(vm.id);
}

absl::StatusOr<nlohmann::json> AgentPing(AgentClient& agent) {
  absl::StatusOr<absl::Duration> rtt = agent.Ping(kAgentTimeout);
  if (!rtt.ok()) return rtt.status();
  const AgentInfo& info = agent.info();
  return nlohmann::json{
      {"rtt_us", absl::ToInt64Microseconds(*rtt)}, {"agent_version", info.agent_version},
      {"protocol_version", info.protocol_version}, {"kernel_release", info.kernel_release},
      {"boot_time_ns", info.boot_time_ns},         {"features", info.features}};
}

nlohmann::json ContainerStatsJson(const GuestContainerStats& s) {
  return {{"container_id", s.container_id},
          {"cpu_usage_ns", s.cpu_usage_ns},
          {"memory_working_set_bytes", s.memory_working_set_bytes},
          {"memory_rss_bytes", s.memory_rss_bytes},
          {"rootfs_used_bytes", s.rootfs_used_bytes},
          {"pids", s.pids}};
}

absl::StatusOr<nlohmann::json> AgentStats(AgentClient& agent) {
  absl::StatusOr<GuestSandboxStats> stats = agent.SandboxStats(kAgentTimeout);
  if (!stats.ok()) return stats.status();
  nlohmann::json containers = nlohmann::json::array();
  for (const GuestContainerStats& s : stats->containers)
    containers.push_back(ContainerStatsJson(s));
  return nlohmann::json{{"memory_total_bytes", stats->memory_total_bytes},
                        {"memory_available_bytes", stats->memory_available_bytes},
                        {"memory_used_bytes", stats->memory_used_bytes},
                        {"cpu_usage_ns", stats->cpu_usage_ns},
                        {"process_count", stats->process_count},
                        {"containers", containers}};
}

// The pod's containers as the host records them, with the guest's process counts.
const char* ContainerStateName(ContainerState s) {
  switch (s) {
    case ContainerState::kCreated:
      return "created";
    case ContainerState::kRunning:
      return "running";
    case ContainerState::kExited:
      return "exited";
    default:
      return "unknown";
  }
}

absl::StatusOr<nlohmann::json> AgentPs(const AdminContext& c, AgentClient& agent, const VmRow& vm) {
  ContainerFilter filter;
  filter.sandbox_id_prefix = vm.id;
  std::vector<Container> containers = c.containers->List(filter);
  std::vector<std::string> ids;
  for (const Container& ct : containers) ids.push_back(ct.metadata.id);
  std::map<std::string, GuestContainerStats> guest;
  if (!ids.empty()) {
    absl::StatusOr<std::vector<GuestContainerStats>> stats = agent.Stats(ids, kAgentTimeout);
    if (!stats.ok()) return stats.status();
    for (const GuestContainerStats& s : *stats) guest[s.container_id] = s;
  }
  absl::StatusOr<GuestInspection> inspection = agent.Inspect(kAgentTimeout);
  if (!inspection.ok()) return inspection.status();
  nlohmann::json rows = nlohmann::json::array();
  for (const Container& ct : containers) {
    auto it = guest.find(ct.metadata.id);
    rows.push_back({{"id", ct.metadata.id},
                    {"name", ct.metadata.config.name},
                    {"image", ct.metadata.config.image},
                    {"state", ContainerStateName(ct.status.state)},
                    {"pid", ct.status.pid},
                    {"pids", it == guest.end() ? 0 : it->second.pids},
                    {"memory_working_set_bytes",
                     it == guest.end() ? 0 : it->second.memory_working_set_bytes}});
  }
  nlohmann::json processes = nlohmann::json::array();
  for (const GuestInspection::Process& p : inspection->processes) {
    processes.push_back({{"pid", p.pid},
                         {"ppid", p.ppid},
                         {"uid", p.uid},
                         {"state", p.state},
                         {"rss_bytes", p.rss_bytes},
                         {"container_id", p.container_id},
                         {"command", p.command}});
  }
  nlohmann::json mounts = nlohmann::json::array();
  for (const GuestInspection::Mount& m : inspection->mounts) {
    mounts.push_back({{"source", m.source},
                      {"target", m.target},
                      {"fs_type", m.fs_type},
                      {"options", m.options}});
  }
  nlohmann::json disks = nlohmann::json::array();
  for (const GuestInspection::Disk& d : inspection->disks) {
    disks.push_back({{"name", d.name},
                     {"serial", d.serial},
                     {"size_bytes", d.size_bytes},
                     {"read_only", d.read_only},
                     {"mount_point", d.mount_point}});
  }
  return nlohmann::json{{"containers", std::move(rows)},
                        {"processes", std::move(processes)},
                        {"mounts", std::move(mounts)},
                        {"disks", std::move(disks)},
                        {"truncated", inspection->truncated}};
}

// One row per configured template shape; an empty list when templates are off.
nlohmann::json Templates(const AdminContext& c) {
  nlohmann::json rows = nlohmann::json::array();
  if (c.templates == nullptr) return rows;
  for (const VmTemplateStatus& t : c.templates->Status()) {
    nlohmann::json row = {{"vcpus", t.shape.vcpus},
                          {"memory_mib", t.shape.memory_mib},
                          {"state", VmTemplateStateName(t.state)},
                          {"key", t.key},
                          {"memory_file_bytes", t.memory_file_bytes},
                          {"build_seconds", t.build_seconds},
                          {"clones", t.clones},
                          {"error", t.last_error}};
    row["built_at"] = t.state == VmTemplateStatus::State::kReady
                          ? absl::FormatTime(absl::RFC3339_sec, t.built_at, absl::UTCTimeZone())
                          : "";
    rows.push_back(std::move(row));
  }
  return rows;
}

// The containers the guest holds, each marked with whether podvisord has a record of it (one
// without is what a crash left and the next start removes).
absl::StatusOr<nlohmann::json> AgentContainers(const AdminContext& c, AgentClient& agent,
                                               const VmRow& vm) {
  absl::StatusOr<std::vector<GuestContainer>> guest = agent.ListContainers(kAgentTimeout);
  if (!guest.ok()) return guest.status();
  ContainerFilter filter;
  filter.sandbox_id_prefix = vm.id;
  std::set<std::string> recorded;
  for (const Container& ct : c.containers->List(filter)) recorded.insert(ct.metadata.id);
  nlohmann::json rows = nlohmann::json::array();
  for (const GuestContainer& g : *guest) {
    const char* state = g.state == GuestContainer::State::kRunning  ? "running"
                        : g.state == GuestContainer::State::kExited ? "exited"
                                                                    : "created";
    rows.push_back(
        {{"id", g.id}, {"state", state}, {"pid", g.pid}, {"recorded", recorded.contains(g.id)}});
  }
  return rows;
}

absl::StatusOr<nlohmann::json> Dispatch(const AdminContext& c, const nlohmann::json& req) {
  const std::string command = req.value("command", "");
  if (command == "config") return c.effective_config();
  if (command == "templates") return Templates(c);
  if (command == "vms") {
    nlohmann::json rows = nlohmann::json::array();
    for (const VmRow& vm : ListVms(*c.sandboxes, true)) rows.push_back(VmRowToJson(vm));
    return rows;
  }
  absl::StatusOr<VmRow> vm = FindVm(*c.sandboxes, req.value("pod", ""));
  if (!vm.ok()) return vm.status();
  if (command == "vm") return VmRowToJson(*vm);
  if (command != "agent") {
    return absl::InvalidArgumentError(absl::StrCat("unknown command '", command, "'"));
  }
  absl::StatusOr<std::shared_ptr<AgentClient>> agent = AgentOf(c, *vm);
  if (!agent.ok()) return agent.status();
  const std::string action = req.value("action", "");
  if (action == "ping") return AgentPing(**agent);
  if (action == "stats") return AgentStats(**agent);
  if (action == "ps") return AgentPs(c, **agent, *vm);
  if (action == "containers") return AgentContainers(c, **agent, *vm);
  return absl::InvalidArgumentError(
      absl::StrCat("unknown agent action '", action, "' (ping, stats, ps, containers)"));
}

class AdminServerImpl : public AdminServer {
 public:
  AdminServerImpl(int listen_fd, std::string path, AdminContext context)
      : fd_(listen_fd), path_(std::move(path)), context_(std::move(context)) {
    if (::pipe2(stop_, O_CLOEXEC) != 0) stop_[0] = stop_[1] = -1;
    thread_ = std::thread([this] { Loop(); });
  }
  ~AdminServerImpl() override {
    if (stop_[1] >= 0) (void)!::write(stop_[1], "x", 1);
    thread_.join();
    ::close(fd_);
    if (stop_[0] >= 0) ::close(stop_[0]);
    if (stop_[1] >= 0) ::close(stop_[1]);
    ::unlink(path_.c_str());
  }

 private:
  void Loop() {
    for (;;) {
      pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_[0], POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[1].revents != 0) return;
      int conn = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) continue;
      Serve(conn);
      ::close(conn);
    }
  }

  // One request line in, one answer out. Connections are served one at a time: this is a
  // debugging aid for root, bounded by the request size and the I/O timeout.
  void Serve(int conn) {
    timeval tv{kIoTimeoutMs / 1000, 0};
    ::setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    std::string request;
    char buf[4096];
    while (request.find('\n') == std::string::npos) {
      ssize_t n = ::recv(conn, buf, sizeof buf, 0);
      if (n <= 0) break;
      request.append(buf, static_cast<size_t>(n));
      if (request.size() > kMaxRequestBytes) {
        Send(conn, R"({"ok":false,"error":"request too large"})");
        return;
      }
    }
    Send(conn, HandleAdminRequest(context_, request.substr(0, request.find('\n'))));
  }

  static void Send(int conn, std::string answer) {
    answer.push_back('\n');
    size_t off = 0;
    while (off < answer.size()) {
      ssize_t n = ::send(conn, answer.data() + off, answer.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }

  const int fd_;
  const std::string path_;
  const AdminContext context_;
  int stop_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace

std::string HandleAdminRequest(const AdminContext& context, const std::string& request) {
  nlohmann::json req = nlohmann::json::parse(request, nullptr, /*allow_exceptions=*/false);
  if (!req.is_object()) return R"({"ok":false,"error":"request is not a JSON object"})";
  absl::StatusOr<nlohmann::json> result;
  try {
    result = Dispatch(context, req);
  } catch (const nlohmann::json::exception& e) {
    result = absl::InvalidArgumentError(absl::StrCat("bad request: ", e.what()));
  }
  if (!result.ok()) {
    return nlohmann::json{{"ok", false},
                          {"code", absl::StatusCodeToString(result.status().code())},
                          {"error", std::string(result.status().message())}}
        .dump();
  }
  return nlohmann::json{{"ok", true}, {"result", *result}}.dump();
}

absl::StatusOr<std::unique_ptr<AdminServer>> AdminServer::Start(const std::string& socket_path,
                                                                AdminContext context) {
  sockaddr_un addr{};
  if (socket_path.size() >= sizeof addr.sun_path) {
    return absl::InvalidArgumentError(absl::StrCat("admin socket path too long: ", socket_path));
  }
  ::unlink(socket_path.c_str());  // under our own state directory, which the root lock guards
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus("admin socket", errno);
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
  // Created 0600 from the start: no window in which others could connect.
  mode_t old_umask = ::umask(0177);
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old_umask);
  if (rc != 0 || ::listen(fd, 16) != 0) {
    absl::Status s = ErrnoStatus(absl::StrCat("admin socket ", socket_path), errno);
    ::close(fd);
    return s;
  }
  return std::make_unique<AdminServerImpl>(fd, socket_path, std::move(context));
}

}  // namespace podvisor::cri
