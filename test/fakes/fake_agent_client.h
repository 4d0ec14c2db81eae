#pragma once

// An AgentClient for unit tests: records what it was asked, answers from settable results, and
// can simulate the guest going away.

#include <algorithm>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "pod-sandbox/agent_client.h"

namespace podvisor::testing {

class FakeAgentClient : public AgentClient {
 public:
  explicit FakeAgentClient(Options options) : options_(std::move(options)) {
    info_.protocol_version = 1;
    info_.agent_version = "fake-agent";
    info_.kernel_release = "6.1.0-fake";
  }
  // Waits still pending fail (as the real client's do when it closes).
  ~FakeAgentClient() override {
    std::vector<std::thread> waiters;
    {
      std::lock_guard<std::mutex> lock(mu_);
      gone_ = true;
      waiters.swap(waiters_);
    }
    cv_.notify_all();
    for (std::thread& t : waiters) t.join();
  }

  // Everything the host asked of the guest, in order.
  struct Log {
    std::vector<SandboxSetup> sandbox_setups;
    std::vector<NetworkSetup> network_setups;
    int shutdowns = 0;
    bool closed = false;
    std::vector<std::pair<std::string, ContainerSpec>> created;
    std::vector<std::string> started;
    std::vector<std::pair<std::string, int>> signals;
    std::vector<std::string> removed;
    std::vector<std::pair<std::string, ProcessSpec>> execs;
    std::vector<std::pair<std::string, std::string>> disks_attached;  // serial, mount point
    std::vector<std::string> disks_detached;
    std::vector<std::pair<std::string, ContainerResources>> resource_updates;
    std::vector<PodLimits> pod_updates;
  };
  std::shared_ptr<Log> log = std::make_shared<Log>();
  absl::Status sandbox_setup_result;
  absl::Status update_result;  // what UpdateContainerResources answers
  absl::Status create_result;
  // What CreateContainer reports the guest gave the init process; unset: what the spec asked for
  // (uid, else 0; the gid; its groups with the gid, ascending) as an agent that reads no image
  // files would resolve it. `report_no_user`: an agent too old to say.
  std::optional<ContainerUser> created_user;
  bool report_no_user = false;
  absl::Status list_result;  // what ListContainers answers when not OK
  bool ignore_sigterm = false;
  bool exec_hangs = false;
  int exec_exit_code = 0;
  std::string exec_stdout, exec_stderr;

  // The guest vanished: the client reports it as the real one would.
  void SimulateDisconnect(const absl::Status& why) {
    connected_ = false;
    if (options_.on_disconnect) options_.on_disconnect(why);
  }

  const AgentInfo& info() const override { return info_; }
  bool connected() const override { return connected_; }
  void Close() override {
    if (!connected_) return;
    connected_ = false;
    log->closed = true;
    if (options_.on_disconnect) options_.on_disconnect(absl::CancelledError("closed"));
  }
  absl::StatusOr<absl::Duration> Ping(absl::Duration) override { return absl::Microseconds(100); }
  absl::Status SetupSandbox(const SandboxSetup& setup, absl::Duration) override {
    log->sandbox_setups.push_back(setup);
    return sandbox_setup_result;
  }
  absl::Status SetupNetwork(const NetworkSetup& setup, absl::Duration) override {
    log->network_setups.push_back(setup);
    return absl::OkStatus();
  }
  absl::Status Shutdown(bool, absl::Duration, absl::Duration) override {
    ++log->shutdowns;
    return absl::OkStatus();
  }
  absl::StatusOr<std::optional<ContainerUser>> CreateContainer(const std::string& id,
                                                               const ContainerSpec& spec,
                                                               absl::Duration) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!create_result.ok()) return create_result;
    log->created.emplace_back(id, spec);
    procs_[{id, ""}] = Proc{};
    if (report_no_user) return std::nullopt;
    if (created_user) return created_user;
    ContainerUser u;
    u.uid = spec.process.user.uid.value_or(0);
    u.gid = spec.process.user.gid;
    u.supplemental_groups = spec.process.user.additional_gids;
    u.supplemental_groups.push_back(u.gid);
    std::sort(u.supplemental_groups.begin(), u.supplemental_groups.end());
    u.supplemental_groups.erase(
        std::unique(u.supplemental_groups.begin(), u.supplemental_groups.end()),
        u.supplemental_groups.end());
    return std::optional<ContainerUser>(u);
  }
  absl::StatusOr<uint32_t> StartContainer(const std::string& id, absl::Duration) override {
    std::lock_guard<std::mutex> lock(mu_);
    log->started.push_back(id);
    if (!procs_.contains({id, ""})) return absl::NotFoundError("no container " + id);
    return 42u;
  }
  absl::Status SignalProcess(const std::string& id, const std::string& exec_id, int signal, bool,
                             absl::Duration) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      log->signals.push_back({id, signal});
      if (signal == 15 && ignore_sigterm) return absl::OkStatus();
    }
    ExitInfo exit;
    exit.signal = signal;
    exit.exit_code = 128 + signal;
    SimulateExit(id, exec_id, exit);
    return absl::OkStatus();
  }
  absl::StatusOr<ExitInfo> WaitProcess(const std::string& id, const std::string& exec_id,
                                       absl::Duration timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    auto done = [&] {
      auto it = procs_.find({id, exec_id});
      return it == procs_.end() || it->second.exit.has_value();
    };
    if (!cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout), [&] { return gone_ || done(); })) {
      return absl::DeadlineExceededError("wait: deadline");
    }
    if (!done()) return absl::UnavailableError("the agent client is gone");
    auto it = procs_.find({id, exec_id});
    if (it == procs_.end()) return absl::NotFoundError("no process");
    return *it->second.exit;
  }
  void WaitProcessAsync(const std::string& id, const std::string& exec_id, absl::Duration timeout,
                        ExitCallback done) override {
    std::lock_guard<std::mutex> lock(mu_);
    waiters_.emplace_back([this, id, exec_id, timeout, done = std::move(done)] {
      done(WaitProcess(id, exec_id, timeout));
    });
  }
  absl::Status RemoveContainer(const std::string& id, bool, absl::Duration) override {
    std::lock_guard<std::mutex> lock(mu_);
    log->removed.push_back(id);
    procs_.erase({id, ""});
    return absl::OkStatus();
  }
  // An exec writes exec_stdout/exec_stderr and exits with exec_exit_code, unless exec_hangs.
  absl::StatusOr<uint32_t> ExecProcess(const std::string& id, const std::string& exec_id,
                                       const ProcessSpec& process, absl::Duration) override {
    StreamCallback out, err;
    {
      std::lock_guard<std::mutex> lock(mu_);
      log->execs.push_back({id, process});
      Proc p;
      if (!exec_hangs) {
        ExitInfo e;
        e.exit_code = exec_exit_code;
        p.exit = e;
      }
      procs_[{id, exec_id}] = p;
      out = callbacks_[process.stdout_stream];
      err = callbacks_[process.stderr_stream];
    }
    if (!exec_hangs) {
      if (out) out(exec_stdout, true);
      if (err) err(exec_stderr, true);
    }
    return 43u;
  }
  absl::Status ResizeTty(const std::string&, const std::string&, uint32_t, uint32_t,
                         absl::Duration) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<std::vector<GuestContainerStats>> Stats(const std::vector<std::string>& ids,
                                                         absl::Duration) override {
    std::vector<GuestContainerStats> out;
    for (const std::string& id : ids) {
      GuestContainerStats s;
      s.container_id = id;
      s.cpu_usage_ns = 1000;
      s.memory_working_set_bytes = 4096;
      out.push_back(s);
    }
    return out;
  }
  // Every container the fake knows, with the figures Stats gives, and fixed guest totals.
  absl::StatusOr<GuestSandboxStats> SandboxStats(absl::Duration timeout) override {
    std::vector<std::string> ids;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [key, proc] : procs_) {
        if (key.second.empty()) ids.push_back(key.first);
      }
    }
    GuestSandboxStats out;
    absl::StatusOr<std::vector<GuestContainerStats>> containers = Stats(ids, timeout);
    if (!containers.ok()) return containers.status();
    out.containers = *containers;
    out.memory_total_bytes = 256 << 20;
    out.memory_available_bytes = 200 << 20;
    out.memory_used_bytes = 56 << 20;
    out.cpu_usage_ns = 5000000;
    out.process_count = 3;
    return out;
  }
  // The agent as PID 1 and one process per running container the fake knows.
  absl::StatusOr<GuestInspection> Inspect(absl::Duration) override {
    std::lock_guard<std::mutex> lock(mu_);
    GuestInspection out;
    out.processes.push_back({1, 0, "/init", "", 4 << 20, "S", 0});
    int32_t pid = 100;
    for (const auto& [key, proc] : procs_) {
      if (key.second.empty())
        out.processes.push_back({pid++, 1, "sleep", key.first, 1 << 20, "S", 0});
    }
    out.mounts.push_back({"rootfs", "/", "rootfs", "rw"});
    return out;
  }
  // Every container the fake holds (created by CreateContainer or AddRunningContainer, until
  // RemoveContainer).
  absl::StatusOr<std::vector<GuestContainer>> ListContainers(absl::Duration) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!list_result.ok()) return list_result;
    std::vector<GuestContainer> out;
    for (const auto& [key, proc] : procs_) {
      if (!key.second.empty()) continue;
      GuestContainer c;
      c.id = key.first;
      c.pid = 42;
      c.state = proc.exit ? GuestContainer::State::kExited : GuestContainer::State::kRunning;
      out.push_back(c);
    }
    return out;
  }
  absl::Status UpdateContainerResources(const std::string& id, const ContainerResources& r,
                                        absl::Duration) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!update_result.ok()) return update_result;
    if (!procs_.contains({id, ""})) return absl::NotFoundError("no container " + id);
    log->resource_updates.emplace_back(id, r);
    return absl::OkStatus();
  }
  absl::Status UpdatePodResources(const PodLimits& limits, absl::Duration) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!update_result.ok()) return update_result;
    log->pod_updates.push_back(limits);
    return absl::OkStatus();
  }
  absl::Status PortForward(uint32_t, uint32_t, absl::Duration, uint32_t) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<std::string> DiskAttached(const std::string& serial,
                                           const std::string& mount_point, const std::string&, bool,
                                           absl::Duration) override {
    std::lock_guard<std::mutex> lock(mu_);
    log->disks_attached.push_back({serial, mount_point});
    return std::string("/dev/sdb");
  }
  absl::Status DiskDetach(const std::string& serial, absl::Duration) override {
    std::lock_guard<std::mutex> lock(mu_);
    log->disks_detached.push_back(serial);
    return absl::OkStatus();
  }
  uint32_t AllocateStreamId() override {
    std::lock_guard<std::mutex> lock(mu_);
    return ++next_stream_;
  }
  void SetStreamCallback(uint32_t id, StreamCallback callback) override {
    std::lock_guard<std::mutex> lock(mu_);
    callbacks_[id] = std::move(callback);
  }

  // The guest sends bytes on a stream (as the agent's pumps do).
  void EmitStream(uint32_t id, absl::string_view data, bool eof) {
    StreamCallback cb;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cb = callbacks_[id];
    }
    if (cb) cb(data, eof);
  }
  // A process exits: WaitProcess answers and the exit event is sent.
  void SimulateExit(const std::string& id, const std::string& exec_id, const ExitInfo& exit) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = procs_.find({id, exec_id});
      if (it == procs_.end() || it->second.exit) return;
      it->second.exit = exit;
    }
    cv_.notify_all();
    if (options_.on_event) {
      AgentEvent e;
      e.kind = AgentEvent::Kind::kProcessExited;
      e.container_id = id;
      e.exec_id = exec_id;
      e.exit = exit;
      options_.on_event(e);
    }
  }
  absl::Status WriteStream(uint32_t, absl::string_view, bool) override { return absl::OkStatus(); }
  void CloseStream(uint32_t) override {}
  absl::Status AckStream(uint32_t stream_id, uint64_t offset) override {
    std::lock_guard<std::mutex> lock(mu_);
    acks_[stream_id] = offset;
    return absl::OkStatus();
  }
  absl::StatusOr<OutputAttached> AttachOutput(const std::string& id, const OutputAttach& attach,
                                              absl::Duration) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!procs_.contains({id, ""})) return absl::NotFoundError("no container " + id);
    attaches_.push_back({id, attach});
    OutputAttached out;
    out.stdout_offset = attach.stdout_offset;
    out.stderr_offset = attach.stderr_offset;
    out.exited = procs_[{id, ""}].exit.has_value();
    return out;
  }
  // The last acknowledged offset of each stream, and the re-attachments asked for.
  std::map<uint32_t, uint64_t> acks() {
    std::lock_guard<std::mutex> lock(mu_);
    return acks_;
  }
  std::vector<std::pair<std::string, OutputAttach>> attaches() {
    std::lock_guard<std::mutex> lock(mu_);
    return attaches_;
  }
  // A container that is already running in the guest (created by a previous daemon).
  void AddRunningContainer(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    procs_[{id, ""}] = Proc{};
  }

 private:
  Options options_;
  AgentInfo info_;
  bool connected_ = true;
  uint32_t next_stream_ = 0;
  struct Proc {
    std::optional<ExitInfo> exit;
  };
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::pair<std::string, std::string>, Proc> procs_;
  std::map<uint32_t, StreamCallback> callbacks_;
  std::map<uint32_t, uint64_t> acks_;
  bool gone_ = false;
  std::vector<std::thread> waiters_;
  std::vector<std::pair<std::string, OutputAttach>> attaches_;
};

}  // namespace podvisor::testing
