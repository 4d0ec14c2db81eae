#include "streaming/request_cache.h"

#include <sys/random.h>

#include <cerrno>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace podvisor::streaming {

std::string RandomToken(size_t bytes) {
  std::string raw(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    ssize_t n = ::getrandom(raw.data() + got, bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;  // getrandom cannot fail on Linux >= 3.17 with these flags; be safe anyway
    }
    got += static_cast<size_t>(n);
  }
  return absl::WebSafeBase64Escape(raw);
}

RequestCache::RequestCache(absl::Duration ttl, size_t max_pending, Clock clock)
    : ttl_(ttl), max_pending_(max_pending), clock_(std::move(clock)) {}

void RequestCache::DropExpiredLocked(absl::Time now) {
  while (!order_.empty() && order_.front().first <= now) {
    auto it = entries_.find(order_.front().second);
    if (it != entries_.end() && it->second.expires <= now) entries_.erase(it);
    order_.pop_front();
  }
}

absl::StatusOr<std::string> RequestCache::Insert(StreamingRequest request) {
  absl::MutexLock lock(&mu_);
  absl::Time now = clock_();
  DropExpiredLocked(now);
  if (entries_.size() >= max_pending_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "too many pending streaming requests (", max_pending_, "); try again later"));
  }
  std::string token;
  do {
    token = RandomToken();
  } while (entries_.count(token) != 0);
  entries_.emplace(token, Entry{std::move(request), now + ttl_});
  order_.emplace_back(now + ttl_, token);
  return token;
}

std::optional<StreamingRequest> RequestCache::Consume(const std::string& token) {
  absl::MutexLock lock(&mu_);
  absl::Time now = clock_();
  DropExpiredLocked(now);
  auto it = entries_.find(token);
  if (it == entries_.end()) return std::nullopt;
  if (it->second.expires <= now) {
    entries_.erase(it);
    return std::nullopt;
  }
  StreamingRequest request = std::move(it->second.request);
  entries_.erase(it);
  return request;
}

size_t RequestCache::Size() {
  absl::MutexLock lock(&mu_);
  DropExpiredLocked(clock_());
  return entries_.size();
}

}  // namespace podvisor::streaming
