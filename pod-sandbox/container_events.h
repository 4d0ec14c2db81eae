#pragma once

// Container lifecycle events (CRI GetContainerEvents, kubelet's evented PLEG): what the stores of
// both handlers saw change, handed to every subscriber in the order of the changes.
//
// The stores' observers (ObjectStore::SetObserver) turn each durable change into events here
// (ContainerTransitions, SandboxTransitions) and Publish them; a subscriber's stream takes them
// from its own bounded queue. A subscriber that falls behind by more than `queue_limit` events is
// dropped (its Next answers RESOURCE_EXHAUSTED) instead of making the daemon wait or grow.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pod-sandbox/container.h"
#include "pod-sandbox/sandbox.h"

namespace podvisor {

enum class ContainerEventType { kCreated, kStarted, kStopped, kDeleted };

// One event. A sandbox's own events (RunPodSandbox, StopPodSandbox, RemovePodSandbox) carry the
// sandbox's id as container_id, as kubelet expects; `sandbox` is then its record as of the
// event, otherwise `container` is the container's record as of the event.
struct ContainerEvent {
  ContainerEventType type = ContainerEventType::kCreated;
  std::string container_id;
  std::string sandbox_id;
  bool host = false;  // of the host handler (docs/runtime-handlers.md)
  int64_t created_at_ns = 0;
  std::optional<Container> container;
  std::optional<Sandbox> sandbox;
};

// What a change of a container record means: Add is CREATED; created -> running STARTED; into
// exited STOPPED; Remove DELETED.
std::vector<ContainerEventType> ContainerTransitions(const Container* before,
                                                     const Container* after);
// A sandbox becomes visible when its Run completed (CREATED, then STARTED), STOPPED when it
// stops being ready, DELETED when a record that had been visible is removed. Records of a Run in
// progress (not yet visible to List) make no events.
std::vector<ContainerEventType> SandboxTransitions(const Sandbox* before, const Sandbox* after);

struct ContainerEventBusOptions {
  size_t queue_limit = 1024;    // events queued per subscriber before it is dropped
  size_t max_subscribers = 32;  // further Subscribe calls are RESOURCE_EXHAUSTED
};

// Thread-safe. Publish never blocks on a subscriber; it must outlive every Subscription.
class ContainerEventBus {
 public:
  class Subscription;

  explicit ContainerEventBus(ContainerEventBusOptions options = {}) : options_(options) {}
  ContainerEventBus(const ContainerEventBus&) = delete;
  ContainerEventBus& operator=(const ContainerEventBus&) = delete;

  // Events published from now on. RESOURCE_EXHAUSTED when max_subscribers are subscribed,
  // UNAVAILABLE once closed.
  absl::StatusOr<std::unique_ptr<Subscription>> Subscribe();
  void Publish(ContainerEvent event);
  // Ends every subscription (daemon shutdown): their Next answer UNAVAILABLE.
  void Close();

  // Publishes the events of every change of `store` (replacing its observer).
  void Watch(ContainerStore* store, bool host);
  void Watch(SandboxStore* store, bool host);

  size_t SubscriberCount() const;

 private:
  struct Queue {
    std::deque<std::shared_ptr<const ContainerEvent>> events;
    bool dropped = false;
  };
  void Unsubscribe(const std::shared_ptr<Queue>& queue);

  const ContainerEventBusOptions options_;
  mutable absl::Mutex mu_;
  std::list<std::shared_ptr<Queue>> queues_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// One subscriber's view; unsubscribes when destroyed.
class ContainerEventBus::Subscription {
 public:
  ~Subscription();
  // The next event, or nullopt when none came within `timeout`. RESOURCE_EXHAUSTED once the
  // subscriber fell behind and was dropped, UNAVAILABLE once the bus closed.
  absl::StatusOr<std::optional<std::shared_ptr<const ContainerEvent>>> Next(absl::Duration timeout);

 private:
  friend class ContainerEventBus;
  Subscription(ContainerEventBus* bus, std::shared_ptr<Queue> queue)
      : bus_(bus), queue_(std::move(queue)) {}
  ContainerEventBus* const bus_;
  const std::shared_ptr<Queue> queue_;
};

}  // namespace podvisor
