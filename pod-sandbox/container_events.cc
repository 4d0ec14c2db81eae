#include "pod-sandbox/container_events.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace podvisor {
namespace {

bool Visible(const Sandbox* s) { return s != nullptr && s->status.run_completed; }
bool Ready(const Sandbox* s) { return Visible(s) && s->status.state == SandboxState::kReady; }
bool Visible(const Container* c) { return c != nullptr && !c->status.provisional; }

}  // namespace

std::vector<ContainerEventType> ContainerTransitions(const Container* before,
                                                     const Container* after) {
  // A provisional record (a create under way, or undone) is no container yet.
  if (!Visible(after)) {
    return Visible(before) ? std::vector{ContainerEventType::kDeleted}
                           : std::vector<ContainerEventType>{};
  }
  if (!Visible(before)) return {ContainerEventType::kCreated};
  const ContainerState was = before->status.state;
  const ContainerState is = after->status.state;
  if (was == is) return {};
  if (is == ContainerState::kRunning && was == ContainerState::kCreated) {
    return {ContainerEventType::kStarted};
  }
  if (is == ContainerState::kExited) return {ContainerEventType::kStopped};
  return {};
}

std::vector<ContainerEventType> SandboxTransitions(const Sandbox* before, const Sandbox* after) {
  if (after == nullptr) {
    return Visible(before) ? std::vector{ContainerEventType::kDeleted}
                           : std::vector<ContainerEventType>{};
  }
  if (!Visible(before) && Visible(after)) {
    std::vector<ContainerEventType> out = {ContainerEventType::kCreated};
    if (Ready(after)) out.push_back(ContainerEventType::kStarted);
    return out;
  }
  if (Ready(before) && Visible(after) && !Ready(after)) return {ContainerEventType::kStopped};
  return {};
}

absl::StatusOr<std::unique_ptr<ContainerEventBus::Subscription>> ContainerEventBus::Subscribe() {
  absl::MutexLock lock(&mu_);
  if (closed_) return absl::UnavailableError("the runtime is shutting down");
  if (queues_.size() >= options_.max_subscribers) {
    return absl::ResourceExhaustedError(
        absl::StrCat("GetContainerEvents: ", queues_.size(),
                     " subscribers already (the limit); close one before opening another"));
  }
  auto queue = std::make_shared<Queue>();
  queues_.push_back(queue);
  return std::unique_ptr<Subscription>(new Subscription(this, std::move(queue)));
}

void ContainerEventBus::Unsubscribe(const std::shared_ptr<Queue>& queue) {
  absl::MutexLock lock(&mu_);
  queues_.remove(queue);
}

void ContainerEventBus::Publish(ContainerEvent event) {
  if (event.created_at_ns == 0) event.created_at_ns = absl::ToUnixNanos(absl::Now());
  auto shared = std::make_shared<const ContainerEvent>(std::move(event));
  absl::MutexLock lock(&mu_);
  for (const std::shared_ptr<Queue>& q : queues_) {
    if (q->dropped) continue;
    if (q->events.size() >= options_.queue_limit) {
      // Too far behind: its stream ends; kubelet reconnects and relists.
      q->dropped = true;
      q->events.clear();
      continue;
    }
    q->events.push_back(shared);
  }
}

void ContainerEventBus::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

size_t ContainerEventBus::SubscriberCount() const {
  absl::MutexLock lock(&mu_);
  return queues_.size();
}

void ContainerEventBus::Watch(ContainerStore* store, bool host) {
  store->SetObserver([this, host](const Container* before, const Container* after) {
    const Container& c = after ? *after : *before;
    for (ContainerEventType type : ContainerTransitions(before, after)) {
      ContainerEvent e;
      e.type = type;
      e.container_id = c.metadata.id;
      e.sandbox_id = c.metadata.sandbox_id;
      e.host = host;
      e.container = c;
      Publish(std::move(e));
    }
  });
}

void ContainerEventBus::Watch(SandboxStore* store, bool host) {
  store->SetObserver([this, host](const Sandbox* before, const Sandbox* after) {
    const Sandbox& s = after ? *after : *before;
    for (ContainerEventType type : SandboxTransitions(before, after)) {
      ContainerEvent e;
      e.type = type;
      e.container_id = s.metadata.id;
      e.sandbox_id = s.metadata.id;
      e.host = host;
      e.sandbox = s;
      Publish(std::move(e));
    }
  });
}

ContainerEventBus::Subscription::~Subscription() { bus_->Unsubscribe(queue_); }

absl::StatusOr<std::optional<std::shared_ptr<const ContainerEvent>>>
ContainerEventBus::Subscription::Next(absl::Duration timeout) {
  absl::MutexLock lock(&bus_->mu_);
  Queue* q = queue_.get();
  ContainerEventBus* bus = bus_;
  auto ready = [q, bus]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(bus->mu_) {
    return !q->events.empty() || q->dropped || bus->closed_;
  };
  bus_->mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  if (q->dropped) {
    return absl::ResourceExhaustedError(
        absl::StrCat("GetContainerEvents: the subscriber fell ", bus_->options_.queue_limit,
                     " events behind and was dropped; subscribe again and list to catch up"));
  }
  if (bus_->closed_) return absl::UnavailableError("the runtime is shutting down");
  if (q->events.empty()) return std::nullopt;
  std::shared_ptr<const ContainerEvent> e = std::move(q->events.front());
  q->events.pop_front();
  return e;
}

}  // namespace podvisor
