#include "streaming/connection_admission.h"

namespace podvisor::streaming {

std::shared_ptr<ConnectionAdmission> ConnectionAdmission::Create(size_t max_upgraded,
                                                                 size_t max_unauthenticated,
                                                                 size_t max_per_source) {
  return std::shared_ptr<ConnectionAdmission>(
      new ConnectionAdmission(max_upgraded, max_unauthenticated, max_per_source));
}

std::unique_ptr<ConnectionAdmission::Ticket> ConnectionAdmission::Admit(
    const std::string& source) {
  std::function<void()> evict;
  std::unique_ptr<Ticket> ticket;
  {
    absl::MutexLock lock(&mu_);
    size_t& from_source = per_source_[source];
    if (from_source >= max_per_source_) return nullptr;
    if (unauthenticated_.size() >= max_unauthenticated_ && !unauthenticated_.empty()) {
      Ticket* oldest = unauthenticated_.front();
      evict = std::move(oldest->evict_);
      LeaveUnauthenticatedLocked(oldest);
      oldest->state_ = Ticket::State::kNone;
    }
    ++per_source_[source];
    ticket.reset(new Ticket(shared_from_this(), source));
    ticket->position_ = unauthenticated_.insert(unauthenticated_.end(), ticket.get());
  }
  if (evict) evict();
  return ticket;
}

void ConnectionAdmission::LeaveUnauthenticatedLocked(Ticket* ticket) {
  unauthenticated_.erase(ticket->position_);
  auto it = per_source_.find(ticket->source_);
  if (it != per_source_.end() && --it->second == 0) per_source_.erase(it);
}

size_t ConnectionAdmission::unauthenticated() const {
  absl::MutexLock lock(&mu_);
  return unauthenticated_.size();
}

size_t ConnectionAdmission::upgraded() const {
  absl::MutexLock lock(&mu_);
  return upgraded_;
}

void ConnectionAdmission::Ticket::SetEvictor(std::function<void()> evict) {
  absl::MutexLock lock(&admission_->mu_);
  if (state_ == State::kUnauthenticated) evict_ = std::move(evict);
}

bool ConnectionAdmission::Ticket::Upgrade() {
  ConnectionAdmission& a = *admission_;
  absl::MutexLock lock(&a.mu_);
  if (state_ != State::kUnauthenticated) return state_ == State::kUpgraded;
  a.LeaveUnauthenticatedLocked(this);
  evict_ = nullptr;
  if (a.upgraded_ >= a.max_upgraded_) {
    state_ = State::kNone;
    return false;
  }
  ++a.upgraded_;
  state_ = State::kUpgraded;
  return true;
}

ConnectionAdmission::Ticket::~Ticket() {
  ConnectionAdmission& a = *admission_;
  absl::MutexLock lock(&a.mu_);
  if (state_ == State::kUnauthenticated) {
    a.LeaveUnauthenticatedLocked(this);
  } else if (state_ == State::kUpgraded) {
    --a.upgraded_;
  }
}

}  // namespace podvisor::streaming
