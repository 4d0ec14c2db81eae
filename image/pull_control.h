#pragma once

// The concurrency pieces of a pull: one fetch per blob among concurrent pulls, bounded slots
// for downloads and unpacks, and progress accounting. Every wait gives up when its pull is
// cancelled.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "image/registry_client.h"

namespace podvisor {

// How often a wait looks at its pull's cancellation.
inline constexpr absl::Duration kCancelPollInterval = absl::Milliseconds(100);

// The CANCELLED status of a pull its caller gave up on.
absl::Status PullCancelledError();

// Runs the work for a key once among concurrent callers; followers get the leader's status. A
// leader's failure may be its own (its credentials, its endpoint, its cancellation): a follower
// tries once more itself before giving up.
class SingleFlight {
 public:
  absl::Status Do(const std::string& key, const std::function<absl::Status()>& fn,
                  const CancelCheck& cancelled);

 private:
  struct Call {
    bool done = false;
    absl::Status status;
  };
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Call>> calls_ ABSL_GUARDED_BY(mu_);
};

class Semaphore {
 public:
  explicit Semaphore(int n) : available_(n) {}
  // False (and nothing taken) when `cancelled` turned true while waiting.
  bool Acquire(const CancelCheck& cancelled);
  void Release();

 private:
  absl::Mutex mu_;
  int available_ ABSL_GUARDED_BY(mu_);
};

// Byte and layer counts of one pull, logged every few seconds and at each layer's end.
class PullProgress {
 public:
  PullProgress(std::string name, int64_t total_bytes, size_t layers)
      : name_(std::move(name)), total_(total_bytes), layers_(layers) {}

  void AddBytes(int64_t n);
  void LayerDone();
  void Log(absl::string_view what) const;
  int64_t bytes() const { return bytes_.load(); }

 private:
  const std::string name_;
  const int64_t total_;
  const size_t layers_;
  const absl::Time start_ = absl::Now();
  std::atomic<int64_t> bytes_{0};
  std::atomic<int> done_{0};
  std::atomic<int64_t> last_log_ns_{absl::ToUnixNanos(absl::Now())};
};

}  // namespace podvisor
