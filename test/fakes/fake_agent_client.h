#pragma once

// An AgentClient for unit tests: records what it was asked, answers from settable results, and
// can simulate the guest going away.

#include <functional>
#include <mutex>
#include <string>
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

  // Everything the host asked of the guest, in order.
  struct Log {
    std::vector<SandboxSetup> sandbox_setups;
    std::vector<NetworkSetup> network_setups;
    int shutdowns = 0;
    bool closed = false;
  };
  std::shared_ptr<Log> log = std::make_shared<Log>();
  absl::Status sandbox_setup_result;

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
  absl::Status CreateContainer(const std::string&, const ContainerSpec&, absl::Duration) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<uint32_t> StartContainer(const std::string&, absl::Duration) override {
    return absl::UnimplementedError("fake");
  }
  absl::Status SignalProcess(const std::string&, const std::string&, int, bool,
                             absl::Duration) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<ExitInfo> WaitProcess(const std::string&, const std::string&,
                                       absl::Duration) override {
    return absl::UnimplementedError("fake");
  }
  void WaitProcessAsync(const std::string&, const std::string&, absl::Duration,
                        ExitCallback done) override {
    done(absl::UnimplementedError("fake"));
  }
  absl::Status RemoveContainer(const std::string&, bool, absl::Duration) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<uint32_t> ExecProcess(const std::string&, const std::string&, const ProcessSpec&,
                                       absl::Duration) override {
    return absl::UnimplementedError("fake");
  }
  absl::Status ResizeTty(const std::string&, const std::string&, uint32_t, uint32_t,
                         absl::Duration) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<std::vector<GuestContainerStats>> Stats(const std::vector<std::string>&,
                                                         absl::Duration) override {
    return std::vector<GuestContainerStats>{};
  }
  absl::Status PortForward(uint32_t, uint32_t, absl::Duration) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<std::string> DiskAttached(const std::string&, const std::string&,
                                           const std::string&, bool, absl::Duration) override {
    return absl::UnimplementedError("fake");
  }
  absl::Status DiskDetach(const std::string&, absl::Duration) override {
    return absl::UnimplementedError("fake");
  }
  uint32_t AllocateStreamId() override { return ++next_stream_; }
  void SetStreamCallback(uint32_t, StreamCallback) override {}
  absl::Status WriteStream(uint32_t, absl::string_view, bool) override {
    return absl::OkStatus();
  }
  void CloseStream(uint32_t) override {}

 private:
  Options options_;
  AgentInfo info_;
  bool connected_ = true;
  uint32_t next_stream_ = 0;
};

}  // namespace podvisor::testing
