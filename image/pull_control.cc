#include "image/pull_control.h"

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/log.h"

namespace podvisor {
namespace {

constexpr absl::Duration kProgressInterval = absl::Seconds(5);

bool IsCancelled(const CancelCheck& cancelled) { return cancelled && cancelled(); }

}  // namespace

absl::Status PullCancelledError() {
  return absl::CancelledError("the pull was cancelled (the client hung up or its deadline passed)");
}

absl::Status SingleFlight::Do(const std::string& key, const std::function<absl::Status()>& fn,
                              const CancelCheck& cancelled) {
  for (int round = 0;; ++round) {
    std::shared_ptr<Call> call;
    {
      absl::MutexLock lock(&mu_);
      auto it = calls_.find(key);
      if (it != calls_.end()) {
        call = it->second;
        while (!mu_.AwaitWithTimeout(absl::Condition(&call->done), kCancelPollInterval)) {
          if (IsCancelled(cancelled)) return PullCancelledError();
        }
        if (call->status.ok() || round > 0) return call->status;
        continue;
      }
      call = std::make_shared<Call>();
      calls_[key] = call;
    }
    absl::Status s = fn();
    absl::MutexLock lock(&mu_);
    call->status = s;
    call->done = true;
    calls_.erase(key);
    return s;
  }
}

bool Semaphore::Acquire(const CancelCheck& cancelled) {
  absl::MutexLock lock(&mu_);
  const absl::Condition free(
      +[](int* available) { return *available > 0; }, &available_);
  while (!mu_.AwaitWithTimeout(free, kCancelPollInterval)) {
    if (IsCancelled(cancelled)) return false;
  }
  if (IsCancelled(cancelled)) return false;
  --available_;
  return true;
}

void Semaphore::Release() {
  absl::MutexLock lock(&mu_);
  ++available_;
}

void PullProgress::AddBytes(int64_t n) {
  bytes_.fetch_add(n);
  const int64_t now = absl::ToUnixNanos(absl::Now());
  int64_t last = last_log_ns_.load();
  if (now - last > absl::ToInt64Nanoseconds(kProgressInterval) &&
      last_log_ns_.compare_exchange_strong(last, now)) {
    Log("downloading");
  }
}

void PullProgress::LayerDone() {
  done_.fetch_add(1);
  Log("layer done");
}

void PullProgress::Log(absl::string_view what) const {
  const double secs = absl::ToDoubleSeconds(absl::Now() - start_);
  const double mb = static_cast<double>(bytes_.load()) / 1e6;
  PV_LOG(kInfo) << "pull " << name_ << ": " << what << ": "
                << absl::StrFormat("%.1f/%.1f MB fetched, %d/%d layers ready, %.1f MB/s", mb,
                                   static_cast<double>(total_) / 1e6, done_.load(), layers_,
                                   secs > 0 ? mb / secs : 0.0);
}

}  // namespace podvisor
