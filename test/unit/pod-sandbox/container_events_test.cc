#include "pod-sandbox/container_events.h"

#include <memory>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

using ::testing::ElementsAre;
using Type = ContainerEventType;

Container MakeContainer(const std::string& id, ContainerState state) {
  Container c;
  c.metadata.id = id;
  c.metadata.name = "name-" + id;
  c.metadata.sandbox_id = "pod1";
  c.status.state = state;
  return c;
}

Sandbox MakeSandbox(bool run_completed, SandboxState state) {
  Sandbox s;
  s.metadata.id = "pod1";
  s.metadata.name = "pod1-name";
  s.status.run_completed = run_completed;
  s.status.state = state;
  return s;
}

TEST(ContainerTransitionsTest, LifecycleMapsToTheFourEvents) {
  const Container created = MakeContainer("c1", ContainerState::kCreated);
  const Container running = MakeContainer("c1", ContainerState::kRunning);
  const Container exited = MakeContainer("c1", ContainerState::kExited);
  EXPECT_THAT(ContainerTransitions(nullptr, &created), ElementsAre(Type::kCreated));
  EXPECT_THAT(ContainerTransitions(&created, &running), ElementsAre(Type::kStarted));
  EXPECT_THAT(ContainerTransitions(&running, &exited), ElementsAre(Type::kStopped));
  EXPECT_THAT(ContainerTransitions(&created, &exited), ElementsAre(Type::kStopped));
  EXPECT_THAT(ContainerTransitions(&exited, nullptr), ElementsAre(Type::kDeleted));
  // A status change that is not a state change (pid, resources) is no event.
  EXPECT_TRUE(ContainerTransitions(&running, &running).empty());
}

// A host container's record is written before the container exists (for recovery): it is no
// container until the create succeeds, and one undone is never seen at all.
TEST(ContainerTransitionsTest, AProvisionalRecordIsNoContainer) {
  Container creating = MakeContainer("c1", ContainerState::kCreated);
  creating.status.provisional = true;
  const Container created = MakeContainer("c1", ContainerState::kCreated);
  EXPECT_TRUE(ContainerTransitions(nullptr, &creating).empty());
  EXPECT_TRUE(ContainerTransitions(&creating, nullptr).empty());  // a failed create undone
  EXPECT_THAT(ContainerTransitions(&creating, &created), ElementsAre(Type::kCreated));
  EXPECT_THAT(ContainerTransitions(&created, nullptr), ElementsAre(Type::kDeleted));
}

TEST(SandboxTransitionsTest, OnlyCompletedRunsAreSeen) {
  const Sandbox booting = MakeSandbox(false, SandboxState::kNotReady);
  const Sandbox ready = MakeSandbox(true, SandboxState::kReady);
  const Sandbox stopped = MakeSandbox(true, SandboxState::kNotReady);
  EXPECT_TRUE(SandboxTransitions(nullptr, &booting).empty());
  EXPECT_TRUE(SandboxTransitions(&booting, nullptr).empty());  // a failed Run undone
  EXPECT_THAT(SandboxTransitions(&booting, &ready), ElementsAre(Type::kCreated, Type::kStarted));
  EXPECT_THAT(SandboxTransitions(&ready, &stopped), ElementsAre(Type::kStopped));
  EXPECT_TRUE(SandboxTransitions(&stopped, &stopped).empty());
  EXPECT_THAT(SandboxTransitions(&stopped, nullptr), ElementsAre(Type::kDeleted));
}

class ContainerEventBusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = RecordStore::Open(dir_.Join("s.db"));
    ASSERT_TRUE(r.ok());
    records_ = std::move(*r);
    containers_ = std::make_unique<ContainerStore>(records_.get(), "container");
    host_containers_ = std::make_unique<ContainerStore>(records_.get(), "host_container");
    sandboxes_ = std::make_unique<SandboxStore>(records_.get(), "sandbox");
  }

  static std::shared_ptr<const ContainerEvent> NextOf(ContainerEventBus::Subscription& sub) {
    auto e = sub.Next(absl::Seconds(5));
    EXPECT_TRUE(e.ok()) << e.status();
    if (!e.ok() || !e->has_value()) return nullptr;
    return **e;
  }

  static absl::Status SetState(ContainerStore& store, const std::string& id, ContainerState st) {
    return store
        .Update(id,
                [st](ContainerStatus& s) {
                  s.state = st;
                  return absl::OkStatus();
                })
        .status();
  }

  testing::TempDir dir_;
  std::unique_ptr<RecordStore> records_;
  std::unique_ptr<ContainerStore> containers_;
  std::unique_ptr<ContainerStore> host_containers_;
  std::unique_ptr<SandboxStore> sandboxes_;
};

TEST_F(ContainerEventBusTest, EventsOfBothHandlersArriveInOrderWithTheirRecords) {
  ContainerEventBus bus;
  bus.Watch(containers_.get(), false);
  bus.Watch(host_containers_.get(), true);
  bus.Watch(sandboxes_.get(), false);
  auto sub = bus.Subscribe();
  ASSERT_TRUE(sub.ok());

  ASSERT_TRUE(sandboxes_->Add(MakeSandbox(false, SandboxState::kNotReady)).ok());
  ASSERT_TRUE(sandboxes_
                  ->Update("pod1",
                           [](SandboxStatus& s) {
                             s.run_completed = true;
                             s.state = SandboxState::kReady;
                             return absl::OkStatus();
                           })
                  .ok());
  ASSERT_TRUE(containers_->Add(MakeContainer("vm1", ContainerState::kCreated)).ok());
  ASSERT_TRUE(host_containers_->Add(MakeContainer("host1", ContainerState::kCreated)).ok());
  ASSERT_TRUE(SetState(*containers_, "vm1", ContainerState::kRunning).ok());
  ASSERT_TRUE(SetState(*host_containers_, "host1", ContainerState::kRunning).ok());
  ASSERT_TRUE(SetState(*host_containers_, "host1", ContainerState::kExited).ok());
  ASSERT_TRUE(host_containers_->Remove("host1").ok());

  struct Want {
    std::string id;
    Type type;
    bool host;
  };
  const std::vector<Want> want = {{"pod1", Type::kCreated, false}, {"pod1", Type::kStarted, false},
                                  {"vm1", Type::kCreated, false},  {"host1", Type::kCreated, true},
                                  {"vm1", Type::kStarted, false},  {"host1", Type::kStarted, true},
                                  {"host1", Type::kStopped, true}, {"host1", Type::kDeleted, true}};
  int64_t last = 0;
  for (const Want& w : want) {
    std::shared_ptr<const ContainerEvent> e = NextOf(**sub);
    ASSERT_NE(e, nullptr) << w.id;
    EXPECT_EQ(e->container_id, w.id);
    EXPECT_EQ(e->type, w.type) << w.id;
    EXPECT_EQ(e->host, w.host) << w.id;
    EXPECT_EQ(e->sandbox_id, "pod1");
    EXPECT_GE(e->created_at_ns, last);
    last = e->created_at_ns;
  }
  auto more = (*sub)->Next(absl::Milliseconds(10));
  ASSERT_TRUE(more.ok());
  EXPECT_FALSE(more->has_value());
}

TEST_F(ContainerEventBusTest, RecordsTravelAsOfTheEvent) {
  ContainerEventBus bus;
  bus.Watch(containers_.get(), false);
  auto sub = bus.Subscribe();
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE(containers_->Add(MakeContainer("c1", ContainerState::kCreated)).ok());
  ASSERT_TRUE(SetState(*containers_, "c1", ContainerState::kRunning).ok());
  ASSERT_TRUE(SetState(*containers_, "c1", ContainerState::kExited).ok());
  auto created = NextOf(**sub);
  auto started = NextOf(**sub);
  auto stopped = NextOf(**sub);
  ASSERT_TRUE(created && started && stopped);
  ASSERT_TRUE(created->container && started->container && stopped->container);
  EXPECT_EQ(created->container->status.state, ContainerState::kCreated);
  EXPECT_EQ(started->container->status.state, ContainerState::kRunning);
  EXPECT_EQ(stopped->container->status.state, ContainerState::kExited);
  EXPECT_FALSE(stopped->sandbox.has_value());
}

TEST_F(ContainerEventBusTest, NoEventIsATimeoutNotAnError) {
  ContainerEventBus bus;
  auto sub = bus.Subscribe();
  ASSERT_TRUE(sub.ok());
  auto e = (*sub)->Next(absl::Milliseconds(20));
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->has_value());
}

TEST_F(ContainerEventBusTest, ASubscriberThatFallsBehindIsDroppedAndOthersGoOn) {
  ContainerEventBus bus({.queue_limit = 3, .max_subscribers = 4});
  bus.Watch(containers_.get(), false);
  auto slow = bus.Subscribe();
  auto fast = bus.Subscribe();
  ASSERT_TRUE(slow.ok() && fast.ok());
  for (int i = 0; i < 5; ++i) {
    // Publishing never waits for the slow one.
    ASSERT_TRUE(
        containers_->Add(MakeContainer(absl::StrCat("c", i), ContainerState::kCreated)).ok());
    ASSERT_NE(NextOf(**fast), nullptr);
  }
  auto e = (*slow)->Next(absl::Seconds(1));
  EXPECT_EQ(e.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(e.status().message()), ::testing::HasSubstr("fell 3 events behind"));
}

TEST_F(ContainerEventBusTest, SubscribersAreBounded) {
  ContainerEventBus bus({.queue_limit = 8, .max_subscribers = 2});
  auto a = bus.Subscribe();
  auto b = bus.Subscribe();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(bus.Subscribe().status().code(), absl::StatusCode::kResourceExhausted);
  a->reset();
  EXPECT_EQ(bus.SubscriberCount(), 1u);
  EXPECT_TRUE(bus.Subscribe().ok());
}

TEST_F(ContainerEventBusTest, CloseEndsAWaitingSubscriber) {
  ContainerEventBus bus;
  auto sub = bus.Subscribe();
  ASSERT_TRUE(sub.ok());
  std::thread closer([&] {
    absl::SleepFor(absl::Milliseconds(50));
    bus.Close();
  });
  const absl::Time start = absl::Now();
  auto e = (*sub)->Next(absl::Seconds(30));
  closer.join();
  EXPECT_EQ(e.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(bus.Subscribe().status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace podvisor
