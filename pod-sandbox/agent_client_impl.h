// Internal to pod-sandbox's agent client (not for other code): AgentClientImpl, the AgentClient
// over a stream socket. agent_client_impl.cc holds the channel (handshake, the reader thread,
// frames, heartbeats, deadlines); agent_client_calls.cc turns each AgentClient call into its
// request and its response back into domain types.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/status_util.h"
#include "pod-sandbox/agent_client.h"
#include "pod-sandbox/agent_wire.h"

namespace podvisor::agent_client_internal {

namespace v1 = agent::v1;

using CallResult = absl::StatusOr<v1::Response>;
using CallCallback = std::function<void(CallResult)>;

class AgentClientImpl final : public AgentClient {
 public:
  AgentClientImpl(int fd, Options options);

  ~AgentClientImpl() override;

  absl::Status Start();

  const AgentInfo& info() const override { return info_; }
  bool connected() const override { return !dead_.load(); }

  void Close() override { Fail(absl::CancelledError("agent channel closed by the host")); }

  absl::StatusOr<absl::Duration> Ping(absl::Duration timeout) override;

  absl::Status SetupSandbox(const SandboxSetup& s, absl::Duration timeout) override;

  absl::Status SetupNetwork(const NetworkSetup& s, absl::Duration timeout) override;

  absl::Status Shutdown(bool reboot, absl::Duration grace, absl::Duration timeout) override;

  absl::StatusOr<std::optional<ContainerUser>> CreateContainer(const std::string& id,
                                                               const ContainerSpec& spec,
                                                               absl::Duration timeout) override;

  absl::StatusOr<uint32_t> StartContainer(const std::string& id, absl::Duration timeout) override;

  absl::Status SignalProcess(const std::string& id, const std::string& exec_id, int signal,
                             bool all, absl::Duration timeout) override;

  absl::StatusOr<ExitInfo> WaitProcess(const std::string& id, const std::string& exec_id,
                                       absl::Duration timeout) override;

  void WaitProcessAsync(const std::string& id, const std::string& exec_id, absl::Duration timeout,
                        ExitCallback done) override;

  absl::Status RemoveContainer(const std::string& id, bool force, absl::Duration timeout) override;

  absl::StatusOr<uint32_t> ExecProcess(const std::string& id, const std::string& exec_id,
                                       const ProcessSpec& process, absl::Duration timeout) override;

  absl::Status ResizeTty(const std::string& id, const std::string& exec_id, uint32_t rows,
                         uint32_t cols, absl::Duration timeout) override;

  absl::StatusOr<std::vector<GuestContainerStats>> Stats(const std::vector<std::string>& ids,
                                                         absl::Duration timeout) override;

  absl::StatusOr<GuestSandboxStats> SandboxStats(absl::Duration timeout) override;
  absl::StatusOr<GuestInspection> Inspect(absl::Duration timeout) override;
  absl::StatusOr<std::vector<GuestContainer>> ListContainers(absl::Duration timeout) override;

  absl::Status UpdateContainerResources(const std::string& id, const ContainerResources& resources,
                                        absl::Duration timeout) override;
  absl::Status UpdatePodResources(const PodLimits& limits, absl::Duration timeout) override;

  absl::Status PortForward(uint32_t port, uint32_t stream_id, absl::Duration timeout,
                           uint32_t window) override;

  absl::StatusOr<std::string> DiskAttached(const std::string& serial,
                                           const std::string& mount_point,
                                           const std::string& fs_type, bool readonly,
                                           absl::Duration timeout) override;

  absl::Status DiskDetach(const std::string& serial, absl::Duration timeout) override;

  uint32_t AllocateStreamId() override;

  void SetStreamCallback(uint32_t stream_id, StreamCallback callback) override {
    std::lock_guard<std::mutex> lock(mu_);
    streams_[stream_id] = std::move(callback);
  }

  absl::Status WriteStream(uint32_t stream_id, absl::string_view data, bool eof) override;

  absl::Status AckStream(uint32_t stream_id, uint64_t offset) override;

  absl::StatusOr<OutputAttached> AttachOutput(const std::string& id, const OutputAttach& attach,
                                              absl::Duration timeout) override;

  void CloseStream(uint32_t stream_id) override;

 private:
  struct Pending {
    v1::Response::ResultCase expected;
    v1::Request::CallCase call;  // names the guest's step timings in the debug log
    absl::Time deadline;
    CallCallback callback;
  };

  absl::Status CallStatus(const v1::Request& req, absl::Duration timeout, absl::string_view what) {
    absl::StatusOr<v1::Response> r = Call(req, timeout);
    return r.ok() ? absl::OkStatus() : WithContext(r.status(), what);
  }

  // Blocks the calling thread (never the reader) until the answer or the deadline.
  absl::StatusOr<v1::Response> Call(const v1::Request& req, absl::Duration timeout);

  // `callback` runs exactly once: on the reader thread, or here when the send fails.
  void CallAsync(const v1::Request& req, absl::Duration timeout, CallCallback callback);

  CallCallback TakePending(uint64_t id);

  // Writes a whole frame; a guest that does not drain its socket for dead_after is dead.
  absl::Status Send(const v1::Frame& frame);

  void Wake() {
    uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof(one));
  }

  void Fail(const absl::Status& why);

  absl::Status Handshake();

  void ReaderLoop();

  // Before the handshake the channel may start in the middle of a frame: the guest's writes
  // that were under way when a previous daemon's connection went away are delivered to this one
  // (QEMU keeps what it could not pass on). Everything up to the answer to one of our calls (the
  // Hello: ids are random, so a match is no accident) is dropped. Reader thread only.
  absl::Status Resync(absl::string_view bytes, std::string* aligned);

  absl::Status HandlePayload(const std::string& payload);

  void ExpireCalls(absl::Time now);

  void Heartbeat(absl::Time now, absl::Time* last_ping);

  // The channel is dead: fail every call, forget the streams, tell the owner once.
  void Drain();

  int fd_;
  int wake_fd_ = -1;
  Options options_;
  AgentInfo info_;
  std::thread reader_;
  std::atomic<bool> dead_{false};
  // Reader thread only: until the first answer to one of our calls, bytes wait in unsynced_.
  bool synced_ = false;
  std::string unsynced_;
  size_t scan_from_ = 0;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<uint32_t> next_stream_{1};
  std::mutex write_mu_;  // whole frames only
  std::mutex mu_;
  absl::Status dead_status_;                    // guarded by mu_
  std::map<uint64_t, Pending> pending_;         // guarded by mu_
  std::map<uint32_t, StreamCallback> streams_;  // guarded by mu_
  absl::Time last_rx_ = absl::InfinitePast();   // guarded by mu_
  bool heartbeat_ = false;                      // guarded by mu_
};

}  // namespace podvisor::agent_client_internal
