#pragma once

// Which accepted connections the streaming server keeps (internal to streaming/). A connection
// that has not shown a valid token yet ("unauthenticated") holds a slot of a small pool of its
// own: at most `max_unauthenticated` at once, the oldest closed to make room for a new one, and at
// most `max_per_source` from one client address (more are refused on accept). Once its token is
// valid it moves to the pool of upgraded connections (`max_upgraded`). So sockets that never send
// a request cannot keep exec from anyone else: they never hold an upgraded slot, and they are
// pushed out by newer connections (and time out after the request header timeout anyway).
//
// Thread-safe.

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace podvisor::streaming {

class ConnectionAdmission : public std::enable_shared_from_this<ConnectionAdmission> {
 public:
  // Held for as long as its connection lives; releases its slot when destroyed.
  class Ticket {
   public:
    ~Ticket();
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    // How to close the connection when it is evicted; called on the thread that admits the
    // connection that takes its place, outside the admission's lock.
    void SetEvictor(std::function<void()> evict);
    // The token was valid: moves to the upgraded pool. False when it is full (the caller refuses
    // the request; the ticket then holds nothing).
    bool Upgrade();

   private:
    friend class ConnectionAdmission;
    Ticket(std::shared_ptr<ConnectionAdmission> admission, std::string source)
        : admission_(std::move(admission)), source_(std::move(source)) {}
    const std::shared_ptr<ConnectionAdmission> admission_;
    const std::string source_;
    // Guarded by admission_->mu_.
    enum class State { kUnauthenticated, kUpgraded, kNone } state_ = State::kUnauthenticated;
    std::list<Ticket*>::iterator position_;
    std::function<void()> evict_;
  };

  static std::shared_ptr<ConnectionAdmission> Create(size_t max_upgraded,
                                                     size_t max_unauthenticated,
                                                     size_t max_per_source);

  // A new connection from `source` (its address). Null when refused: that source already holds
  // `max_per_source` unauthenticated connections. Evicts the oldest unauthenticated connection
  // when the pool is full.
  std::unique_ptr<Ticket> Admit(const std::string& source);

  size_t unauthenticated() const;
  size_t upgraded() const;

 private:
  ConnectionAdmission(size_t max_upgraded, size_t max_unauthenticated, size_t max_per_source)
      : max_upgraded_(max_upgraded),
        max_unauthenticated_(max_unauthenticated),
        max_per_source_(max_per_source) {}
  void LeaveUnauthenticatedLocked(Ticket* ticket) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t max_upgraded_;
  const size_t max_unauthenticated_;
  const size_t max_per_source_;
  mutable absl::Mutex mu_;
  std::list<Ticket*> unauthenticated_ ABSL_GUARDED_BY(mu_);  // oldest first
  std::map<std::string, size_t> per_source_ ABSL_GUARDED_BY(mu_);
  size_t upgraded_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace podvisor::streaming
