#pragma once

// Pending streaming requests keyed by random single-use tokens (internal to streaming/).

#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <variant>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "streaming/streaming_server.h"

namespace podvisor::streaming {

using StreamingRequest = std::variant<ExecRequest, AttachRequest, PortForwardRequest>;

// Holds requests until their URL is used, at most once and within `ttl`. At most `max_pending`
// requests wait at a time: expired ones are dropped first, then an insert fails with
// RESOURCE_EXHAUSTED. Thread-safe.
class RequestCache {
 public:
  using Clock = std::function<absl::Time()>;
  RequestCache(absl::Duration ttl, size_t max_pending, Clock clock = absl::Now);

  // Stores the request under a fresh random token (22 URL-safe characters, 128 bits).
  absl::StatusOr<std::string> Insert(StreamingRequest request);
  // Removes and returns the request; nullopt when the token is unknown, used or expired.
  std::optional<StreamingRequest> Consume(const std::string& token);
  size_t Size();

 private:
  struct Entry {
    StreamingRequest request;
    absl::Time expires;
  };
  void DropExpiredLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const absl::Duration ttl_;
  const size_t max_pending_;
  const Clock clock_;
  absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::deque<std::pair<absl::Time, std::string>> order_ ABSL_GUARDED_BY(mu_);  // by expiry
};

// A random token: `bytes` random bytes, base64url without padding.
std::string RandomToken(size_t bytes = 16);

}  // namespace podvisor::streaming
