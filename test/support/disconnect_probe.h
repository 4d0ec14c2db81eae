#pragma once

// Records an AgentClient's disconnect callback, for tests of the agent channel.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>

#include "absl/status/status.h"

namespace podvisor::testing {

// Records the disconnect callback.
struct DisconnectProbe {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<absl::Status> why;
  std::chrono::steady_clock::time_point at;

  std::function<void(const absl::Status&)> Callback() {
    return [this](const absl::Status& s) {
      std::lock_guard<std::mutex> lock(mu);
      why = s;
      at = std::chrono::steady_clock::now();
      cv.notify_all();
    };
  }
  bool Wait(std::chrono::seconds timeout) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, timeout, [&] { return why.has_value(); });
  }
};

}  // namespace podvisor::testing
