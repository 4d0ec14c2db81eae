#pragma once

// The agent's side of the protocol: reads frames from the channel, dispatches requests, and
// writes responses, stream data and events back.

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "agent/channel.h"
#include "agent/options.h"
#include "agent/result.h"
#include "agent/v1/agent.pb.h"

namespace podvisor::agent {

class ContainerManager;

// Thread-safe: requests that block (wait, shutdown) run on their own threads.
class AgentServer {
 public:
  AgentServer(AgentOptions options, FrameChannel* channel);
  ~AgentServer();

  // Serves until the channel fails for good (socket EOF). Returns the reason.
  Error Serve();

  // Used by the container code to send stdout/stderr/port-forward bytes and events.
  Error SendStream(uint32_t stream_id, const std::string& data, bool eof);
  Error SendEvent(const v1::Event& event);

  // Routes StreamData from the host for `stream_id` to `handler` until removed.
  using StreamHandler = std::function<void(const std::string& data, bool eof)>;
  void AddStreamHandler(uint32_t stream_id, StreamHandler handler);
  void RemoveStreamHandler(uint32_t stream_id);

  // Routes the host's acknowledgements (StreamData.ack_offset) of stream `stream_id` to `handler`
  // (a port-forward's window). A new host, a CloseStream or the removal calls it once more with
  // kStreamGone.
  using AckHandler = std::function<void(uint64_t offset)>;
  static constexpr uint64_t kStreamGone = ~uint64_t{0};
  void AddAckHandler(uint32_t stream_id, AckHandler handler);
  void RemoveAckHandler(uint32_t stream_id);

 private:
  using StepClock = std::chrono::steady_clock;
  void HandleFrame(const std::string& payload, StepClock::time_point received);
  void HandleRequest(uint64_t id, const v1::Request& request, StepClock::time_point received);
  v1::Response Dispatch(const v1::Request& request);
  // Dispatch, with the step timings the handler marked in the response; `received`: when the
  // frame was read, for a call served on its own thread.
  v1::Response TimedDispatch(const v1::Request& request, const StepClock::time_point* received);
  v1::Response Hello(const v1::HelloRequest& req);
  v1::Response DiskAttached(const v1::DiskAttachedRequest& req);
  void Shutdown(uint64_t id, const v1::ShutdownRequest& req);
  void HandleStream(const v1::StreamData& data);
  void Respond(uint64_t id, const v1::Response& response);

  AgentOptions options_;
  FrameChannel* channel_;
  std::atomic<bool> handshake_done_{false};
  std::unique_ptr<ContainerManager> containers_;
  std::mutex streams_mu_;
  std::map<uint32_t, StreamHandler> streams_;
  std::map<uint32_t, AckHandler> ack_handlers_;  // guarded by streams_mu_
};

v1::Response ErrorResponse(const Error& error);

}  // namespace podvisor::agent
