#pragma once

// What the protocol handlers share with the server (internal to streaming/): the runtime, the
// timeouts, and the bookkeeping that lets Stop() end every connection and wait for every session
// thread.

#include <cstdint>
#include <functional>
#include <map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "streaming/streaming_server.h"

namespace podvisor::streaming {

// Thread-safe.
class SessionTracker {
 public:
  explicit SessionTracker(size_t max_sessions = 4096) : max_sessions_(max_sessions) {}
  // Runs `fn` on a new detached thread that Stop() waits for. False when stopping or when
  // `max_sessions` sessions already run (the caller then refuses the session).
  bool Spawn(std::function<void()> fn);
  // Registers how to abort a live connection; 0 when stopping (the caller then aborts it).
  uint64_t AddConnection(std::function<void()> abort);
  void RemoveConnection(uint64_t id);
  // Aborts every connection, refuses new work and waits (up to `timeout`) for session threads.
  // Returns false if some were still running at the deadline.
  bool StopAll(absl::Duration timeout);
  size_t ActiveSessions();

 private:
  const size_t max_sessions_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  size_t threads_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, std::function<void()>> connections_ ABSL_GUARDED_BY(mu_);
};

struct ServerContext {
  explicit ServerContext(size_t max_sessions = 4096) : tracker(max_sessions) {}
  StreamingRuntime* runtime = nullptr;
  absl::Duration stream_creation_timeout = absl::Seconds(30);
  absl::Duration idle_timeout = absl::Hours(4);
  size_t max_forwards_per_connection = 256;
  size_t max_ports_per_request = 64;
  size_t max_buffered_input = 4 << 20;
  size_t max_queued_control_frames = 1000;
  SessionTracker tracker;
};

}  // namespace podvisor::streaming
