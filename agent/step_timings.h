#pragma once

// Per-request step timings: how long each step of a container or disk call took in the guest
// (Response.timings, logged by the host at debug level). The server opens a scope around each
// request it serves; the code doing the work marks the end of each step. A mark on a thread
// without a scope does nothing, so helpers may mark whatever calls them.

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "agent/v1/agent.pb.h"

namespace podvisor::agent {

// The most steps one response carries (the host refuses more).
inline constexpr size_t kMaxStepTimings = 32;

// The timings of the request the calling thread serves, from construction to destruction.
// Not thread-safe: one per serving thread.
class ScopedStepTimings {
 public:
  // The first step starts at `start` (e.g. when the request's frame was read).
  explicit ScopedStepTimings(
      std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now());
  ~ScopedStepTimings();
  ScopedStepTimings(const ScopedStepTimings&) = delete;
  ScopedStepTimings& operator=(const ScopedStepTimings&) = delete;

  // Adds the steps so far to `response`.
  void CopyTo(v1::Response* response) const;

 private:
  friend void MarkStep(const char* step);
  ScopedStepTimings* previous_;
  std::chrono::steady_clock::time_point last_;
  std::vector<std::pair<std::string, uint64_t>> steps_;
};

// The time since the previous mark (or since the request began) was spent on `step`.
void MarkStep(const char* step);

}  // namespace podvisor::agent
