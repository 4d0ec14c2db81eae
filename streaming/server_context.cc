#include "streaming/server_context.h"

#include <thread>
#include <vector>

namespace podvisor::streaming {

bool SessionTracker::Spawn(std::function<void()> fn) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || threads_ >= max_sessions_) return false;
    ++threads_;
  }
  std::thread([this, fn = std::move(fn)]() mutable {
    fn();
    fn = nullptr;  // release captured connections before Stop() may return
    absl::MutexLock lock(&mu_);
    --threads_;
  }).detach();
  return true;
}

uint64_t SessionTracker::AddConnection(std::function<void()> abort) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return 0;
  uint64_t id = next_id_++;
  connections_.emplace(id, std::move(abort));
  return id;
}

void SessionTracker::RemoveConnection(uint64_t id) {
  absl::MutexLock lock(&mu_);
  connections_.erase(id);
}

bool SessionTracker::StopAll(absl::Duration timeout) {
  std::vector<std::function<void()>> aborts;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (auto& [id, abort] : connections_) aborts.push_back(std::move(abort));
    connections_.clear();
  }
  for (auto& abort : aborts) abort();
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return threads_ == 0; };
  return mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
}

size_t SessionTracker::ActiveSessions() {
  absl::MutexLock lock(&mu_);
  return threads_;
}

}  // namespace podvisor::streaming
