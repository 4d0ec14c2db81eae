#pragma once

// How a session's output gets from the guest to its client (part of ContainerStreamingRuntime):
// the agent's reader thread, which must never block, pushes each stream's bytes into a SinkPump;
// the pump's own thread writes them to the session's ByteSink, which blocks while the client is
// slow. The queue between the two is bounded: the guest's agent sends at most a window of bytes
// the pump has not acknowledged (Process.output_window, PortForwardRequest.window), and the pump
// acknowledges as the client takes them, so a client that does not read stops the process's
// pipe in the guest rather than growing the daemon's memory. A producer that overruns the bound
// anyway (a guest ignoring its window, an attacher far behind its container) ends the stream.
// See docs/streaming.md and docs/reliability.md.

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "streaming/streaming_server.h"

namespace podvisor {

class SinkPump {
 public:
  struct Options {
    // Bytes queued (pushed, not yet written to the sink) beyond which the producer overruns.
    size_t max_queued = 2 << 20;
    // Acknowledge every this many consumed bytes (0: never).
    size_t ack_every = 0;
  };
  // Tells the producer that the first `consumed` bytes are taken (written to the sink, or dropped
  // once the sink is broken). Called on the pump's thread.
  using Ack = std::function<void(uint64_t consumed)>;

  // A null sink discards everything (and needs no thread).
  SinkPump(streaming::ByteSink* sink, Options options, Ack ack = nullptr);
  ~SinkPump() { Stop(); }
  SinkPump(const SinkPump&) = delete;
  SinkPump& operator=(const SinkPump&) = delete;

  // Never blocks. A no-op after Stop or the end of the stream.
  void Push(absl::string_view data, bool eof);
  // Waits until the end of the stream was received and everything before it written (the sink is
  // then closed). True if so within `timeout`.
  bool WaitFlushed(absl::Duration timeout);
  // The producer pushed more than max_queued ahead of the sink: the queue was dropped and the
  // stream ended.
  bool overrun() const;
  // The sink refused a write (the client reset the stream or left): later bytes are dropped
  // (and still acknowledged, so the producer is not held up).
  bool broken() const;
  // Drops what is still queued, closes the sink and joins. Idempotent.
  void Stop();

 private:
  void Run();

  streaming::ByteSink* const sink_;
  const Options options_;
  const Ack ack_;
  mutable absl::Mutex mu_;
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  size_t queued_ ABSL_GUARDED_BY(mu_) = 0;
  bool eof_ ABSL_GUARDED_BY(mu_) = false;
  bool flushed_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool overrun_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ = false;  // written by the pump thread before it ends, or by Stop after the join
  std::thread thread_;
};

}  // namespace podvisor
